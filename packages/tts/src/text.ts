import { AvatarError, countSyllables } from '@avatar/core';
import type { VoiceSettings } from '@avatar/core';
import { cardinal, decimal, digits, ordinal, year } from './numbers.js';

// ---- normalisation ----

const CURRENCIES: Readonly<Record<string, [singular: string, plural: string, cent: string, cents: string]>> = {
  $: ['dollar', 'dollars', 'cent', 'cents'],
  '€': ['euro', 'euros', 'cent', 'cents'],
  '£': ['pound', 'pounds', 'penny', 'pence'],
  '¥': ['yen', 'yen', 'sen', 'sen'],
};

/** Abbreviations that read differently from their letters. Matched case-sensitively, with the dot. */
const ABBREVIATIONS: ReadonlyArray<[RegExp, string]> = [
  [/\be\.g\./gi, 'for example'],
  [/\bi\.e\./gi, 'that is'],
  [/\betc\./gi, 'et cetera'],
  [/\bvs\.?(?=\s)/gi, 'versus'],
  [/\bMrs\./g, 'Missus'],
  [/\bMr\./g, 'Mister'],
  [/\bMs\./g, 'Miz'],
  [/\bDr\.(?=\s+[A-Z])/g, 'Doctor'],
  [/\bDr\./g, 'Drive'],
  [/\bProf\./g, 'Professor'],
  [/\bSt\.(?=\s+[A-Z])/g, 'Saint'],
  [/\bSt\./g, 'Street'],
  [/\bAve\./g, 'Avenue'],
  [/\bJr\./g, 'Junior'],
  [/\bSr\./g, 'Senior'],
  [/\bInc\./g, 'Incorporated'],
  [/\bLtd\./g, 'Limited'],
  [/\bCo\./g, 'Company'],
  [/\bapprox\./gi, 'approximately'],
  [/\bNo\.(?=\s*\d)/g, 'number'],
  [/\bJan\./g, 'January'],
  [/\bFeb\./g, 'February'],
  [/\bAug\./g, 'August'],
  [/\bSept?\./g, 'September'],
  [/\bOct\./g, 'October'],
  [/\bNov\./g, 'November'],
  [/\bDec\./g, 'December'],
];

const SCALE_WORDS = '(?:thousand|million|billion|trillion)';

function money(symbol: string, amount: string, scale: string | undefined): string {
  const names = CURRENCIES[symbol];
  if (!names) return amount;
  const clean = amount.replace(/,/g, '');
  const [whole = '0', frac = ''] = clean.split('.');
  if (scale) return `${decimal(clean)} ${scale.trim().toLowerCase()} ${names[1]}`;
  const units = BigInt(whole === '' ? '0' : whole);
  const unitWord = units === 1n ? names[0] : names[1];
  const centsValue = frac === '' ? 0 : Number(frac.padEnd(2, '0').slice(0, 2));
  const head = `${cardinal(units)} ${unitWord}`;
  if (centsValue === 0) return head;
  const tail = `${cardinal(centsValue)} ${centsValue === 1 ? names[2] : names[3]}`;
  return units === 0n ? tail : `${head} and ${tail}`;
}

function clock(hours: string, minutes: string, suffix: string | undefined): string {
  const h = Number(hours);
  const m = Number(minutes);
  let words = cardinal(h);
  if (m === 0) words += suffix ? '' : " o'clock";
  else if (m < 10) words += ` oh ${cardinal(m)}`;
  else words += ` ${cardinal(m)}`;
  if (suffix) words += suffix.toLowerCase().startsWith('a') ? ' a m' : ' p m';
  return words;
}

/**
 * Rewrites English text so an engine reads it naturally: numbers, money, percentages, ordinals, times,
 * years, abbreviations and symbols become words; typographic punctuation becomes plain punctuation the
 * engines pause on. Other languages get only the punctuation and spacing clean-up (espeak-ng reads
 * their numbers itself).
 */
export function normalizeText(text: string, language = 'en-US'): string {
  let s = text.normalize('NFC');
  // typographic punctuation -> plain
  s = s.replace(/[\u2018\u2019\u201B\u2032]/g, "'").replace(/[\u201C\u201D\u201E\u2033\u00AB\u00BB]/g, '"');
  s = s.replace(/\u2026/g, '...').replace(/\s*[\u2013\u2014]\s*/g, ', ').replace(/[\u00A0\u2000-\u200B\u202F]/g, ' ');
  s = s.replace(/[\r\n\t]+/g, ' ');
  if (!language.toLowerCase().startsWith('en')) return tidy(s);

  for (const [pattern, words] of ABBREVIATIONS) s = s.replace(pattern, words);

  // e-mail addresses and web addresses: read the dots
  s = s.replace(/\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b/g, (_m, user: string, host: string) =>
    `${user.replace(/\./g, ' dot ')} at ${host.replace(/\./g, ' dot ')}`);
  s = s.replace(/\bhttps?:\/\//gi, '').replace(/\bwww\.([\w-]+(?:\.[\w-]+)+)/gi, (_m, host: string) => `w w w dot ${host.replace(/\./g, ' dot ')}`);

  // money: $1,234.50, €5, £3.20, $2.5 million
  s = s.replace(new RegExp(`([$€£¥])\\s?(\\d[\\d,]*(?:\\.\\d+)?)(\\s+${SCALE_WORDS}\\b)?`, 'gi'),
    (_m, sym: string, amount: string, scale: string | undefined) => money(sym, amount, scale));
  s = s.replace(/(\d[\d,]*(?:\.\d+)?)\s?(€|£)/g, (_m, amount: string, sym: string) => money(sym, amount, undefined));
  // percentages
  s = s.replace(/(-?\d[\d,]*(?:\.\d+)?)\s?%/g, (_m, n: string) => `${n.startsWith('-') ? 'minus ' : ''}${decimal(n.replace('-', ''))} percent`);
  // times: 3:30, 10:05pm, 7:00 a.m.
  s = s.replace(/\b(\d{1,2}):(\d{2})(?:\s?([AaPp])\.?\s?[Mm]\b\.?)?/g, (_m, h: string, m: string, ap: string | undefined) => clock(h, m, ap));
  s = s.replace(/\b(\d{1,2})\s?([AaPp])\.?[Mm]\b\.?/g, (_m, h: string, ap: string) => `${cardinal(h)} ${ap.toLowerCase() === 'a' ? 'a m' : 'p m'}`);
  // ordinals: 1st, 22nd, 103rd, 4th
  s = s.replace(/\b(\d+)(st|nd|rd|th)\b/gi, (_m, n: string) => ordinal(n));
  // decades: 1990s, '90s
  s = s.replace(/\b(1[1-9]|20)(\d)0s\b/g, (_m, c: string, d: string) => {
    const y = year(Number(`${c}${d}0`));
    return y.endsWith('y') ? `${y.slice(0, -1)}ies` : `${y}s`;
  });
  // years: a bare four-digit number from 1100 to 2099 (no thousands comma) reads as a year
  s = s.replace(/(?<![\d.,])(1[1-9]\d\d|20\d\d)(?![\d.,]\d)/g, (_m, y: string) => year(Number(y)));
  // numeric ranges: 10-20 -> ten to twenty
  s = s.replace(/\b(\d+)\s?-\s?(\d+)\b/g, (_m, a: string, b: string) => `${cardinal(a)} to ${cardinal(b)}`);
  // negative numbers and plain numbers, with thousands commas or decimals
  s = s.replace(/(^|[\s(])-(\d)/g, '$1minus $2');
  s = s.replace(/\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+/g, (n) => (n.length > 15 && !n.includes('.') ? digits(n) : decimal(n)));

  // symbols
  s = s.replace(/\s*&\s*/g, ' and ').replace(/\s*@\s*/g, ' at ').replace(/\s*\+\s*/g, ' plus ').replace(/\s*=\s*/g, ' equals ');
  s = s.replace(/\s*%\s*/g, ' percent ').replace(/#(?=\w)/g, 'number ').replace(/\s*°\s*([CF])\b/g, (_m, u: string) => ` degrees ${u === 'C' ? 'Celsius' : 'Fahrenheit'}`);
  s = s.replace(/°/g, ' degrees ').replace(/\$/g, ' dollars ').replace(/€/g, ' euros ').replace(/£/g, ' pounds ');
  s = s.replace(/(\w)\/(\w)/g, '$1 slash $2');
  // brackets and quotes are not read aloud; a pause stands in for brackets
  s = s.replace(/[()[\]{}]/g, ', ').replace(/["*_~^|\\<>`]/g, ' ');
  return tidy(s);
}

function tidy(s: string): string {
  return s
    .replace(/\s+([,.;:!?])/g, '$1')
    .replace(/([,;:])(?:\s*[,;:])+/g, '$1')
    .replace(/^[\s,;:]+/, '')
    .replace(/\s+/g, ' ')
    .trim();
}

// ---- checks before synthesis ----

/** Throws AVATAR_ERR_INPUT_TEXT_EMPTY when there is nothing to say. */
export function checkTextNotEmpty(text: string, input = 'text'): void {
  if (!/[\p{L}\p{N}]/u.test(text)) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input });
}

/** Typical syllables per second at rate 1, measured on the engines' default voices (docs/voices.md). */
const SYLLABLES_PER_SECOND: Readonly<Record<string, number>> = { flite: 4.6, festival: 4.4, 'espeak-ng': 4.8 };
const COMMA_PAUSE = 0.15;
const SENTENCE_PAUSE = 0.3;

/**
 * Seconds the text will take, from syllables and punctuation pauses at the voice's rate. It aims at the
 * typical length, a little short rather than long, so text is only refused early when clearly too long;
 * the real duration is checked again after synthesis.
 */
export function estimateSpeechSeconds(text: string, voice: Pick<VoiceSettings, 'engine' | 'rate'>): number {
  const words = text.split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w));
  const syllables = words.reduce((sum, w) => sum + countSyllables(w), 0);
  const commas = (text.match(/[,;:]/g) ?? []).length;
  const sentences = (text.match(/[.!?]+(?:\s|$)/g) ?? []).length;
  const sps = SYLLABLES_PER_SECOND[voice.engine] ?? 4.6;
  const rate = voice.rate > 0 ? voice.rate : 1;
  return (syllables / sps + commas * COMMA_PAUSE + sentences * SENTENCE_PAUSE) / rate;
}

/** Throws AVATAR_ERR_INPUT_TEXT_TOO_LONG when the estimate is over the limit. */
export function checkTextLength(text: string, voice: Pick<VoiceSettings, 'engine' | 'rate'>, maxSeconds: number, input = 'text'): number {
  const seconds = estimateSpeechSeconds(text, voice);
  if (seconds > maxSeconds) {
    throw new AvatarError('AVATAR_ERR_INPUT_TEXT_TOO_LONG', { input, seconds: Math.round(seconds), limit: maxSeconds });
  }
  return seconds;
}

/** Scripts each language's voice can read; languages not listed accept any letters. */
const SCRIPTS_BY_LANGUAGE: ReadonlyArray<[RegExp, readonly string[]]> = [
  [/^(ru|uk|be|bg|sr|mk|kk|ky|tt|ba|cv|mn)\b/, ['Cyrillic', 'Latin']],
  [/^(el|grc)\b/, ['Greek', 'Latin']],
  [/^(zh|cmn|yue|hak)\b/, ['Han', 'Latin']],
  [/^ja\b/, ['Hiragana', 'Katakana', 'Han', 'Latin']],
  [/^ko\b/, ['Hangul', 'Han', 'Latin']],
  [/^(ar|fa|ur|ps|sd|ug)\b/, ['Arabic', 'Latin']],
  [/^he\b/, ['Hebrew', 'Latin']],
  [/^(hi|mr|ne|sa|kok)\b/, ['Devanagari', 'Latin']],
  [/^(bn|as)\b/, ['Bengali', 'Latin']],
  [/^ta\b/, ['Tamil', 'Latin']],
  [/^te\b/, ['Telugu', 'Latin']],
  [/^kn\b/, ['Kannada', 'Latin']],
  [/^ml\b/, ['Malayalam', 'Latin']],
  [/^gu\b/, ['Gujarati', 'Latin']],
  [/^pa\b/, ['Gurmukhi', 'Latin']],
  [/^si\b/, ['Sinhala', 'Latin']],
  [/^ka\b/, ['Georgian', 'Latin']],
  [/^hy\b/, ['Armenian', 'Latin']],
  [/^am\b/, ['Ethiopic', 'Latin']],
  [/^my\b/, ['Myanmar', 'Latin']],
  [/^(en|fr|de|es|it|pt|nl|sv|da|nb|no|fi|et|pl|cs|sk|sl|hr|bs|hu|ro|tr|az|lt|lv|ga|gd|cy|is|mt|eu|ca|gl|id|ms|vi|sw|af|sq|eo|la|ht|qu|om|nci|py|kl|lfn|jbo|tn|uz|ia|io)\b/, ['Latin']],
];

/** Characters that are fine in any voice: digits, spaces, ordinary punctuation. */
const NEUTRAL = /[\p{N}\s.,;:!?'"()[\]{}\-–—…/&%$€£@+=#*]/u;

/**
 * The characters a voice cannot say. flite and festival ship English voices only, so they accept Latin
 * script (accents are dropped before synthesis); espeak-ng voices accept their language's script(s).
 * Emoji and pictographs are never sayable.
 */
export function findUnsayable(text: string, voice: Pick<VoiceSettings, 'engine' | 'language'>): string[] {
  const lang = voice.language.toLowerCase();
  const scripts = voice.engine === 'espeak-ng'
    ? SCRIPTS_BY_LANGUAGE.find(([re]) => re.test(lang))?.[1]
    : ['Latin'];
  const bad = new Set<string>();
  for (const ch of text) {
    if (NEUTRAL.test(ch)) continue;
    if (/\p{M}/u.test(ch)) continue; // combining accents ride on a letter already checked
    if (/[\p{Extended_Pictographic}\p{So}\p{Co}\p{Cn}\p{Cc}]/u.test(ch)) {
      bad.add(ch);
      continue;
    }
    if (!/\p{L}/u.test(ch)) continue; // other punctuation is read as a pause or skipped
    if (scripts && !scripts.some((sc) => new RegExp(`\\p{Script=${sc}}`, 'u').test(ch))) bad.add(ch);
  }
  return [...bad];
}

export function checkSayable(text: string, voice: Pick<VoiceSettings, 'engine' | 'language' | 'voice'>, input = 'text'): void {
  const bad = findUnsayable(text, voice);
  if (bad.length > 0) {
    const chars = bad.slice(0, 20).map((c) => `"${c}" (U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')})`).join(', ');
    throw new AvatarError('AVATAR_ERR_INPUT_TEXT_UNSAYABLE', { input, engine: `${voice.engine} ${voice.voice}`, chars });
  }
}

/**
 * All the checks that can run before synthesis, in the order a user would want to hear about them.
 * Returns the normalised text to speak and its estimated duration.
 */
export function prepareText(text: string, voice: VoiceSettings, maxSeconds: number, input = 'text'): { spokenText: string; estimatedSeconds: number } {
  if (text.trim() === '') throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input });
  // checked after normalisation, which turns symbols such as € and ° into words
  const spokenText = normalizeText(text, voice.language);
  checkSayable(spokenText, voice, input);
  checkTextNotEmpty(spokenText, input);
  const estimatedSeconds = checkTextLength(spokenText, voice, maxSeconds, input);
  return { spokenText, estimatedSeconds };
}

/** Latin letters with accents lose them for the English-only engines, which would otherwise skip them. */
export function stripAccents(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').replace(/ß/g, 'ss').replace(/æ/g, 'ae').replace(/Æ/g, 'AE')
    .replace(/œ/g, 'oe').replace(/Œ/g, 'OE').replace(/ø/g, 'o').replace(/Ø/g, 'O').replace(/ł/g, 'l').replace(/Ł/g, 'L');
}
