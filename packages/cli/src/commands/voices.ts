import type { Command } from 'commander';
import type { VoiceProfile } from '@avatar/core';
import { AvatarError, installedVoices } from '@avatar/core';
import { parseNumberIn, withContext } from '../shared.js';
import { reportRun, runWithProgress } from './run.js';

function describe(p: VoiceProfile): string {
  const lines = [
    `${p.id}  ${p.name}`,
    `  engine ${p.engine}, voice ${p.voice}, language ${p.language}, rate ${p.rate}, pitch ${p.pitch >= 0 ? '+' : ''}${p.pitch} st`,
    `  ${p.origin === 'matched' ? 'matched from a reference recording' : 'made by hand'}, created ${p.createdAt}`,
  ];
  if (p.measured) {
    const m = p.measured;
    lines.push(`  measured: median pitch ${m.medianPitchHz.toFixed(0)} Hz (range ${m.pitchRangeHz[0].toFixed(0)}-${m.pitchRangeHz[1].toFixed(0)} Hz), ${m.syllablesPerSecond.toFixed(1)} syllables/s, ${m.voicedSeconds.toFixed(1)}s voiced of ${m.durationSeconds.toFixed(1)}s`);
  }
  if (p.reason) lines.push(`  ${p.reason}`);
  return lines.join('\n');
}

export function registerVoices(program: Command): void {
  const voices = program.command('voices').description('voice profiles: which engine, voice, rate and pitch speak');

  voices.command('create')
    .description('create a voice profile from engine settings')
    .option('--engine <name>', 'speech engine (default: the default tts engine; "avatar plugins list --stage tts" lists the installed ones)')
    .option('--voice <name>', "the engine's voice (default: the engine's default voice)")
    .option('--language <tag>', "language, e.g. en-US (default: the voice's own, as 'avatar voices engines' lists it)")
    .option('--rate <r>', 'speaking rate, 1 = normal (0.25..4)', parseNumberIn('rate', 0.25, 4), 1)
    .option('--pitch <st>', 'pitch shift in semitones (-24..24)', parseNumberIn('pitch', -24, 24), 0)
    .option('--name <text>', 'a name to recognise it by')
    .action(async (flags: { engine?: string; voice?: string; language?: string; rate: number; pitch: number; name?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const { plugin } = ctx.coordinator.engine('tts', { engines: flags.engine ? { tts: flags.engine } : {} });
        const voice = flags.voice ?? plugin.defaultVoice?.voice;
        if (!voice) throw new AvatarError('AVATAR_ERR_ENGINE_NO_DEFAULT_VOICE', { engine: plugin.name });
        // a voice the engine lists speaks its own language (espeak-ng's pt-br: pt-BR)
        const listed = flags.voice === undefined ? undefined : (await installedVoices(ctx.registry, { engine: plugin.name })).find((v) => v.voice === flags.voice);
        const language = flags.language ?? listed?.language ?? (flags.voice === undefined ? plugin.defaultVoice?.language : undefined) ?? 'en-US';
        const profile = await ctx.voices.create(
          { engine: plugin.name, voice, language, rate: flags.rate, pitch: flags.pitch },
          flags.name ? { name: flags.name } : {},
        );
        out.result(profile, () => describe(profile));
      });
    });

  voices.command('clone')
    .description('match a voice to a reference recording: measures pitch and speaking rate, then picks the nearest engine voice and settings. This is voice matching, not neural voice cloning: the result sounds like a synthetic voice tuned toward the speaker, not like the speaker.')
    .argument('<recording>', 'reference recording (WAV, MP3, OGG, FLAC), at least a few seconds of speech')
    .option('--name <text>', 'a name to recognise it by')
    .option('--engine <name>', 'the voice-matching engine (default: the default voice engine)')
    .action(async (recording: string, flags: { name?: string; engine?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const result = await runWithProgress((signal, onProgress) =>
          ctx.coordinator.matchVoice({ referencePath: recording, signal, onProgress, ...(flags.name && { name: flags.name }), ...(flags.engine && { engine: flags.engine }) }));
        if (!result.success || !result.profile) return reportRun(out, result, 'voice');
        const profile = result.profile;
        out.result(profile, () => describe(profile));
        return 0;
      });
    });

  voices.command('list')
    .description('list voice profiles, newest first')
    .action(async (_flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const { profiles, damaged } = await ctx.voices.list();
        for (const d of damaged) out.note(`warning ${d.code}: ${d.message}`);
        const fallback = profiles.length ? undefined : (await ctx.coordinator.resolveVoice(null)).voice;
        out.result(profiles, () => fallback
          ? `no voice profiles yet; the default voice is ${fallback.engine}/${fallback.voice}`
          : profiles.map((p) => `${p.id}  ${p.engine}/${p.voice}  rate ${p.rate} pitch ${p.pitch}  ${p.name}`).join('\n'));
      });
    });

  voices.command('engines')
    .description('list the voices the speech engines installed here speak with, and their languages; "avatar voices create --engine E --voice V" makes a profile that speaks with one')
    .option('--engine <name>', 'only this engine (flite, festival, espeak-ng, or an installed plugin\'s)')
    .option('--language <tag>', 'only voices of this language (pt takes pt-BR too)')
    .action(async (flags: { engine?: string; language?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const voices = await installedVoices(ctx.registry, { ...(flags.engine && { engine: flags.engine }), ...(flags.language && { language: flags.language }) });
        out.result(voices, () => voices.length === 0
          ? 'no voices: no speech engine installed here has one (avatar doctor says what to install)'
          : voices.map((v) => `${v.engine.padEnd(10)} ${v.voice.padEnd(18)} ${v.language.padEnd(14)} ${v.gender ?? ''}${v.description ? `  ${v.description}` : ''}`).join('\n'));
      });
    });

  voices.command('show')
    .description('show one voice profile')
    .argument('<id>', 'voice profile id')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const profile = await ctx.voices.get(id);
        out.result(profile, () => describe(profile));
      });
    });

  voices.command('delete')
    .description('delete a voice profile')
    .argument('<id>', 'voice profile id')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        await ctx.voices.delete(id);
        out.result({ deleted: id }, () => `deleted ${id}`);
      });
    });
}
