// Writes docs/errors.md from the error table in @avatar/core (run after a build: npm run docs:errors).
import { writeFileSync } from 'node:fs';
import { ERRORS } from '../packages/core/dist/errors.js';

const areas = {
  INPUT: 'Input', OUTPUT: 'Output', CONFIG: 'Configuration', VOICE: 'Voice profiles', TOOL: 'Tools and engines',
  TTS: 'Tools and engines', ENCODE: 'Tools and engines', STAGE: 'Stages', PLUGIN: 'Plugins', RESOURCE: 'Resources',
  FACE: 'Faces and avatars', JOB: 'Jobs and queue', QUEUE: 'Jobs and queue', STORAGE: 'Jobs and queue', HTTP: 'HTTP API', CANCELLED: 'General', USAGE: 'General', INTERNAL: 'General',
};
const groups = new Map();
for (const [code, spec] of Object.entries(ERRORS)) {
  const area = areas[code.split('_')[2]] ?? 'General';
  if (!groups.has(area)) groups.set(area, []);
  groups.get(area).push([code, spec]);
}
const out = [
  '# Errors',
  '',
  'Every failure avatar reports carries a stable code `AVATAR_ERR_<AREA>_<WHAT>`, a message that names the input',
  'and what is wrong, and a hint saying what to do. The CLI ends with the exit code below (0 done, 1 failed,',
  '2 usage error: bad input or flags); the HTTP API answers with the status below. In `--json` output and in a',
  "failed job's `error` field the error is `{ code, message, hint, params }`.",
  '',
  'Placeholders in braces are filled from the error\'s `params`.',
  '',
];
for (const [area, entries] of groups) {
  out.push(`## ${area}`, '');
  for (const [code, spec] of entries) {
    out.push(`### ${code}`, '', `- message: ${spec.message}`, `- what to do: ${spec.hint}`, `- exit code: ${spec.exitCode}`, `- HTTP status: ${spec.httpStatus}`, '');
  }
}
writeFileSync(new URL('../docs/errors.md', import.meta.url), out.join('\n'));
console.log(`docs/errors.md: ${Object.keys(ERRORS).length} codes`);
