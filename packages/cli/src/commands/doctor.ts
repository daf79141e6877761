import type { Command } from 'commander';
import type { GpuSnapshot, PluginCheck } from '@avatar/core';
import { PLUGIN_API_VERSION, checkPlugin, checkStorage } from '@avatar/core';
import { withContext } from '../shared.js';

interface NativeStatusModule {
  nativeStatus?: () => Promise<unknown> | unknown;
  detectNvenc?: () => Promise<{ available: boolean; reason: string }>;
}

async function nativeReport(): Promise<{ native: unknown; nvenc: { available: boolean; reason: string } }> {
  const spec = '@avatar/native';
  try {
    const mod = (await import(spec)) as NativeStatusModule;
    const native = mod.nativeStatus ? await mod.nativeStatus() : { built: false, reason: 'no status function' };
    const nvenc = mod.detectNvenc ? await mod.detectNvenc() : { available: false, reason: 'not detectable' };
    return { native, nvenc };
  } catch (error) {
    const reason = `native addon package not available (${(error as Error).message.split('\n')[0]})`;
    return { native: { built: false, reason }, nvenc: { available: false, reason } };
  }
}

export function registerDoctor(program: Command): void {
  program.command('doctor')
    .description('check the tools, engines, GPU and native addon this machine has, and the storage folder\'s consistency, and say what to do')
    .action(async (_flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const plugins: { stage: string; name: string; source: string; check: PluginCheck }[] = [];
        for (const { plugin, source } of ctx.registry.list()) plugins.push({ stage: plugin.stage, name: plugin.name, source, check: await checkPlugin(plugin) });
        const gpu: GpuSnapshot = await ctx.resources.gpu.query();
        const { native, nvenc } = await nativeReport();
        const stagesMissing = (['face', 'lipsync', 'inspect'] as const).filter((s) => !ctx.registry.find(s));
        // the storage folder as it is: nothing is changed or removed here
        const storageFindings = await checkStorage(ctx.storageDir, ctx.store);
        // a store on a server (Redis): does it answer?
        const queue = { location: ctx.store.location ?? 'the file store in the storage folder', ok: true, detail: 'answers' };
        if (ctx.store.ping) {
          try {
            await ctx.store.ping();
          } catch (error) {
            Object.assign(queue, { ok: false, detail: error instanceof Error ? error.message : String(error) });
          }
        }
        const report = {
          node: process.version,
          pluginApiVersion: PLUGIN_API_VERSION,
          storage: ctx.storageDir,
          storageFindings,
          queue,
          plugins,
          pluginFailures: ctx.pluginFailures.map((f) => f.toJSON()),
          stagesMissing,
          gpu,
          native,
          nvenc,
          budgets: ctx.resources.budgets,
        };
        const ok = plugins.every((p) => p.check.ok) && ctx.pluginFailures.length === 0 && storageFindings.length === 0 && queue.ok;
        out.result(report, () => {
          const lines = [`node ${process.version}, plugin API ${PLUGIN_API_VERSION}, storage ${ctx.storageDir}`, '', 'engines:'];
          for (const p of plugins) {
            lines.push(`  ${p.check.ok ? 'ok     ' : 'MISSING'} ${p.stage}/${p.name}: ${p.check.detail}  [${p.source}]`);
            if (!p.check.ok && p.check.install) lines.push(`          install: ${p.check.install}`);
            for (const m of p.check.models ?? []) {
              lines.push(`          model ${m.name}: ${m.status}, sha256 ${m.sha256.slice(0, 12)}…, from ${m.source} (${m.license})`);
            }
          }
          for (const f of ctx.pluginFailures) lines.push(`  BROKEN  ${f.message}`);
          if (stagesMissing.length) lines.push(`  not installed: ${stagesMissing.join(', ')} stage (full pipeline runs stop at that stage)`);
          lines.push('', `GPU: ${gpu.available ? gpu.devices.map((d) => `#${d.index} ${d.name}, ${d.usedMB}/${d.totalMB} MB used`).join('; ') : gpu.reason}`);
          const n = native as { built?: boolean; detail?: string; reason?: string; frameKernels?: string[]; cudaKernels?: { status: string }; cudaRenderer?: { available: boolean; device?: string; reason?: string } };
          lines.push(`native addon: ${n.built ? 'built' : 'not built'} (${n.detail ?? n.reason ?? 'no detail'})`);
          const compiled = n.frameKernels?.includes('warpI420') && n.frameKernels.includes('mouthI420');
          lines.push(`renderer (warp and inner mouth): ${compiled ? 'compiled (native addon)' : 'TypeScript (build the native addon for the compiled one: npm run build:addon -w native)'}`);
          if (n.cudaKernels) lines.push(`renderer's CUDA kernels: ${n.cudaKernels.status}`);
          if (n.cudaRenderer) lines.push(`renderer on a GPU: ${n.cudaRenderer.available ? `yes (${n.cudaRenderer.device}; a run draws there when the host places the lip-sync engine on it)` : `no (${n.cudaRenderer.reason})`}`);
          lines.push(`NVENC: ${nvenc.available ? 'available' : 'not available'} (${nvenc.reason})`);
          const vram = ctx.resources.budgets.vramMB;
          lines.push(`memory budgets: host ${ctx.resources.budgets.ramMB} MB, GPU ${gpu.available ? `what each GPU has free${vram !== undefined ? `, at most ${vram} MB` : ''} (a model goes to the GPU with the most room)` : 'none (models that can run on the CPU do)'}`);
          lines.push('', `job store: ${queue.location}${ctx.store.ping ? `: ${queue.ok ? 'answers' : queue.detail}` : ''}`);
          lines.push('', `storage folder: ${storageFindings.length === 0 ? 'consistent (no damaged job files, expired claims or left-over files)' : `${storageFindings.length} to look at`}`);
          for (const f of storageFindings) lines.push(`  ${f.kind} ${f.path}: ${f.detail}`, `          ${f.advice}`);
          const enginesOk = plugins.every((p) => p.check.ok) && ctx.pluginFailures.length === 0;
          lines.push('', enginesOk ? 'all engines ready' : 'some engines are missing: install what is listed above');
          return lines.join('\n');
        });
        return ok ? 0 : 1;
      });
    });
}
