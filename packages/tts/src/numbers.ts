/** English number words, for the text normaliser. */

const ONES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve',
  'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen'];
const TENS = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];
const SCALES: ReadonlyArray<[bigint, string]> = [
  [10n ** 15n, 'quadrillion'],
  [10n ** 12n, 'trillion'],
  [10n ** 9n, 'billion'],
  [10n ** 6n, 'million'],
  [1000n, 'thousand'],
];

function under100(n: number): string {
  if (n < 20) return ONES[n] ?? '';
  const t = TENS[Math.floor(n / 10)] ?? '';
  return n % 10 === 0 ? t : `${t}-${ONES[n % 10] ?? ''}`;
}

function under1000(n: number): string {
  const h = Math.floor(n / 100);
  const rest = n % 100;
  if (h === 0) return under100(rest);
  return rest === 0 ? `${ONES[h] ?? ''} hundred` : `${ONES[h] ?? ''} hundred ${under100(rest)}`;
}

/** 1234 -> "one thousand two hundred thirty-four". Accepts digit strings of any length. */
export function cardinal(value: number | bigint | string): string {
  let n = typeof value === 'bigint' ? value : BigInt(typeof value === 'string' ? value.replace(/^0+(?=\d)/, '') : Math.trunc(value));
  if (n < 0n) return `minus ${cardinal(-n)}`;
  if (n === 0n) return 'zero';
  if (n >= 10n ** 18n) return digits(n.toString());
  const parts: string[] = [];
  for (const [scale, word] of SCALES) {
    if (n >= scale) {
      parts.push(`${under1000(Number(n / scale))} ${word}`);
      n %= scale;
    }
  }
  if (n > 0n) parts.push(under1000(Number(n)));
  return parts.join(' ');
}

const ORDINAL_WORDS: Readonly<Record<string, string>> = {
  one: 'first', two: 'second', three: 'third', five: 'fifth', eight: 'eighth', nine: 'ninth', twelve: 'twelfth',
};

/** 21 -> "twenty-first". */
export function ordinal(value: number | string): string {
  const words = cardinal(value);
  const match = /([a-z]+)$/.exec(words);
  if (!match?.[1]) return words;
  const last = match[1];
  let replaced: string;
  if (ORDINAL_WORDS[last]) replaced = ORDINAL_WORDS[last];
  else if (last.endsWith('y')) replaced = `${last.slice(0, -1)}ieth`;
  else replaced = `${last}th`;
  return words.slice(0, words.length - last.length) + replaced;
}

/** "2024" -> "twenty twenty-four", "1905" -> "nineteen oh five", "2000" -> "two thousand". */
export function year(value: number): string {
  if (value >= 2000 && value < 2010) return cardinal(value);
  const hi = Math.floor(value / 100);
  const lo = value % 100;
  if (lo === 0) return `${under100(hi)} hundred`;
  return `${under100(hi)} ${lo < 10 ? `oh ${ONES[lo] ?? ''}` : under100(lo)}`;
}

/** "305" -> "three zero five" (for decimals, long codes). */
export function digits(text: string): string {
  return [...text].filter((c) => c >= '0' && c <= '9').map((c) => ONES[Number(c)] ?? '').join(' ');
}

/** "3.14" -> "three point one four"; "1,250" -> "one thousand two hundred fifty". */
export function decimal(text: string): string {
  const clean = text.replace(/,/g, '');
  const [whole = '0', frac] = clean.split('.');
  const head = cardinal(whole === '' ? '0' : whole);
  return frac === undefined || frac === '' ? head : `${head} point ${digits(frac)}`;
}
