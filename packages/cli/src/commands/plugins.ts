import type { Command } from 'commander';
import { AvatarError, STAGE_KINDS, describePlugins } from '@avatar/core';
import type { EngineLicense, PluginDescription, StageKind } from '@avatar/core';
import { oneOfParser, withContext } from '../shared.js';

function licenseLine(license: EngineLicense | null): string {
  if (!license) return 'licence: not declared (refused by --commercial-safe)';
  const models = license.models.map((m) => `${m.name} ${m.license}${m.commercialUse ? '' : ', not for commercial use'}${m.note ? ` (${m.note})` : ''}`);
  return `licence: ${license.code}${license.commercialUse ? '' : ', not for commercial use'}${models.length ? `; models: ${models.join('; ')}` : ''}`;
}

function checkLine(p: PluginDescription): string {
  if (!p.check) return '';
  return `  ${p.check.ok ? 'ready' : 'NOT READY'}: ${p.check.detail}${!p.check.ok && p.check.install ? ` (install: ${p.check.install})` : ''}`;
}

function summary(p: PluginDescription): string {
  return [
    `${p.stage}/${p.name}${p.default ? ' (default)' : ''}  ${p.package}`,
    p.description ? `  ${p.description}` : '',
    checkLine(p),
  ].filter(Boolean).join('\n');
}

function details(p: PluginDescription): string {
  const lines = [
    `${p.stage}/${p.name}${p.default ? ' (the default for its stage)' : ''}`,
    `  package: ${p.package}, plugin API ${p.apiVersion}`,
    ...(p.description ? [`  ${p.description}`] : []),
    `  resources: ${p.resources.device}${p.resources.ramMB ? `, ${p.resources.ramMB} MB memory` : ''}${p.resources.vramMB ? `, ${p.resources.vramMB} MB GPU memory` : ''}`,
    `  ${licenseLine(p.license)}`,
  ];
  if (p.defaultVoice) lines.push(`  default voice: ${p.defaultVoice.voice} (${p.defaultVoice.language})`);
  const options = Object.entries(p.options?.properties ?? {});
  lines.push(options.length ? `  options (--engine-option ${p.stage}.NAME=VALUE):` : '  options: none');
  for (const [name, schema] of options) {
    const { description, type, enum: allowed, default: fallback } = schema as { description?: string; type?: string; enum?: unknown[]; default?: unknown };
    const kind = allowed ? allowed.map(String).join('|') : (type ?? 'any');
    lines.push(`    ${name} (${kind}${fallback !== undefined ? `, default ${JSON.stringify(fallback)}` : ''})${description ? `: ${description}` : ''}`);
  }
  if (p.check) lines.push(checkLine(p));
  return lines.join('\n');
}

export function registerPlugins(program: Command): void {
  const plugins = program.command('plugins').description('the installed engines for each stage: package, options, licences, whether they can run here');

  plugins.command('list')
    .description('list the installed engines, with whether each can run here')
    .option('--stage <stage>', `only this stage: ${STAGE_KINDS.join('|')}`, oneOfParser('stage', STAGE_KINDS))
    .option('--no-check', 'do not run the engines\' checks (faster)')
    .action(async (flags: { stage?: StageKind; check: boolean }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const list = await describePlugins(ctx.registry, { ...(flags.stage && { stage: flags.stage }), check: flags.check, defaults: ctx.coordinator.engineDefaults });
        for (const f of ctx.pluginFailures) out.note(`warning ${f.code}: ${f.message}`);
        out.result(list, () => (list.length ? list.map(summary).join('\n') : 'no engines installed'));
        return list.every((p) => p.check?.ok ?? true) ? 0 : 1;
      });
    });

  plugins.command('info')
    .description('everything about one engine: package, plugin API, resources, options with their meaning, licences, check')
    .argument('<name>', 'the engine name (as --engine STAGE=NAME takes it)')
    .option('--stage <stage>', 'its stage, where two stages have engines of that name', oneOfParser('stage', STAGE_KINDS))
    .action(async (name: string, flags: { stage?: StageKind }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const defaults = ctx.coordinator.engineDefaults;
        const all = await describePlugins(ctx.registry, { ...(flags.stage && { stage: flags.stage }), defaults });
        const matching = all.filter((p) => p.name === name);
        if (matching.length === 0) {
          const stage = flags.stage ?? 'such';
          throw new AvatarError('AVATAR_ERR_PLUGIN_NOT_FOUND', { stage, name, known: all.map((p) => `${p.stage}/${p.name}`).join(', ') || 'none installed' });
        }
        if (matching.length > 1) {
          throw new AvatarError('AVATAR_ERR_USAGE', { reason: `engines named ${name} exist for ${matching.map((p) => p.stage).join(' and ')}: say which with --stage` });
        }
        const [found] = await describePlugins(ctx.registry, { stage: (matching[0] as PluginDescription).stage, check: true, defaults }).then((l) => l.filter((p) => p.name === name));
        const plugin = found as PluginDescription;
        out.result(plugin, () => details(plugin));
        return plugin.check?.ok === false ? 1 : 0;
      });
    });
}
