import type { Command } from 'commander';
import type { VoiceProfile } from '@avatar/core';
import { DEFAULT_VOICE } from '@avatar/tts';
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
    .option('--engine <name>', 'speech engine (see "avatar doctor" for the installed ones)', DEFAULT_VOICE.engine)
    .option('--voice <name>', "the engine's voice", DEFAULT_VOICE.voice)
    .option('--language <tag>', 'language, e.g. en-US', DEFAULT_VOICE.language)
    .option('--rate <r>', 'speaking rate, 1 = normal (0.25..4)', parseNumberIn('rate', 0.25, 4), 1)
    .option('--pitch <st>', 'pitch shift in semitones (-24..24)', parseNumberIn('pitch', -24, 24), 0)
    .option('--name <text>', 'a name to recognise it by')
    .action(async (flags: { engine: string; voice: string; language: string; rate: number; pitch: number; name?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        ctx.registry.get('tts', flags.engine);
        const profile = await ctx.voices.create(
          { engine: flags.engine, voice: flags.voice, language: flags.language, rate: flags.rate, pitch: flags.pitch },
          flags.name ? { name: flags.name } : {},
        );
        out.result(profile, () => describe(profile));
      });
    });

  voices.command('clone')
    .description('match a voice to a reference recording: measures pitch and speaking rate, then picks the nearest engine voice and settings. This is voice matching, not neural voice cloning: the result sounds like a synthetic voice tuned toward the speaker, not like the speaker.')
    .argument('<recording>', 'reference recording (WAV, MP3, OGG, FLAC), at least a few seconds of speech')
    .option('--name <text>', 'a name to recognise it by')
    .action(async (recording: string, flags: { name?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const result = await runWithProgress((signal, onProgress) =>
          ctx.coordinator.matchVoice({ referencePath: recording, signal, onProgress, ...(flags.name && { name: flags.name }) }));
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
        out.result(profiles, () => profiles.length
          ? profiles.map((p) => `${p.id}  ${p.engine}/${p.voice}  rate ${p.rate} pitch ${p.pitch}  ${p.name}`).join('\n')
          : `no voice profiles yet; the default voice is ${DEFAULT_VOICE.engine}/${DEFAULT_VOICE.voice}`);
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
