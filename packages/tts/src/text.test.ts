import { describe, expect, it } from 'vitest';
import { isAvatarError } from '@avatar/core';
import type { VoiceSettings } from '@avatar/core';
import { cardinal, ordinal, year } from './numbers.js';
import { estimateSpeechSeconds, findUnsayable, normalizeText, prepareText } from './text.js';

const flite: VoiceSettings = { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 };
const espeakRu: VoiceSettings = { engine: 'espeak-ng', voice: 'ru', language: 'ru', rate: 1, pitch: 0 };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isAvatarError(error) ? error.code : `not an AvatarError: ${String(error)}`;
  }
  return undefined;
}

describe('number words', () => {
  it('reads cardinals, ordinals and years', () => {
    expect(cardinal(0)).toBe('zero');
    expect(cardinal(1234567)).toBe('one million two hundred thirty-four thousand five hundred sixty-seven');
    expect(ordinal(1)).toBe('first');
    expect(ordinal(22)).toBe('twenty-second');
    expect(ordinal(40)).toBe('fortieth');
    expect(ordinal(112)).toBe('one hundred twelfth');
    expect(year(1999)).toBe('nineteen ninety-nine');
    expect(year(2005)).toBe('two thousand five');
    expect(year(2024)).toBe('twenty twenty-four');
    expect(year(1905)).toBe('nineteen oh five');
    expect(year(1900)).toBe('nineteen hundred');
  });
});

describe('normalizeText (English)', () => {
  const cases: Array<[string, string]> = [
    ['I have 3 cats.', 'I have three cats.'],
    ['It costs $4.50 today.', 'It costs four dollars and fifty cents today.'],
    ['Only $1!', 'Only one dollar!'],
    ['A $2.5 million deal.', 'A two point five million dollars deal.'],
    ['Tickets are €20 or £3.05.', 'Tickets are twenty euros or three pounds and five pence.'],
    ['Growth was 12.5% in 2023.', 'Growth was twelve point five percent in twenty twenty-three.'],
    ['Meet me at 3:30 pm on the 21st.', 'Meet me at three thirty p m on the twenty-first.'],
    ['The train leaves at 10:00.', "The train leaves at ten o'clock."],
    ['Call at 7:05 a.m. please', 'Call at seven oh five a m please'],
    ['Dr. Smith lives on Elm St. near St. Paul.', 'Doctor Smith lives on Elm Street near Saint Paul.'],
    ['Mr. and Mrs. Jones, e.g. the neighbours, etc.', 'Mister and Missus Jones, for example the neighbours, et cetera'],
    ['Cats vs. dogs', 'Cats versus dogs'],
    ['Salt & pepper', 'Salt and pepper'],
    ['Write to ann@example.com', 'Write to ann at example dot com'],
    ['2 + 2 = 4', 'two plus two equals four'],
    ['A population of 1,234,567 people', 'A population of one million two hundred thirty-four thousand five hundred sixty-seven people'],
    ['Pi is 3.14', 'Pi is three point one four'],
    ['Pages 10-20', 'Pages ten to twenty'],
    ['It was -5 outside', 'It was minus five outside'],
    ['In the 1990s', 'In the nineteen nineties'],
    ['It is 20°C', 'It is twenty degrees Celsius'],
    ['He said \u201Chello\u201D \u2014 then left\u2026', 'He said hello, then left...'],
    ['  lots   of\n\nspace  ', 'lots of space'],
    ['No. 5 (the best)', 'number five, the best,'],
  ];
  it.each(cases)('%s', (input, expected) => {
    expect(normalizeText(input, 'en-US')).toBe(expected);
  });

  it('leaves other languages to the engine apart from spacing', () => {
    expect(normalizeText('Es kostet 5 €  heute', 'de')).toBe('Es kostet 5 € heute');
  });
});

describe('text checks', () => {
  it('refuses empty and whitespace-only text', () => {
    expect(codeOf(() => prepareText('', flite, 60))).toBe('AVATAR_ERR_INPUT_TEXT_EMPTY');
    expect(codeOf(() => prepareText(' \n\t ', flite, 60))).toBe('AVATAR_ERR_INPUT_TEXT_EMPTY');
    expect(codeOf(() => prepareText('...', flite, 60))).toBe('AVATAR_ERR_INPUT_TEXT_EMPTY');
  });

  it('estimates duration and refuses text clearly over the limit before synthesis', () => {
    const sentence = 'The quick brown fox jumps over the lazy dog. ';
    const one = estimateSpeechSeconds(sentence, flite);
    expect(one).toBeGreaterThan(1.5);
    expect(one).toBeLessThan(4);
    expect(estimateSpeechSeconds(sentence, { ...flite, rate: 2 })).toBeCloseTo(one / 2, 5);
    const long = sentence.repeat(200);
    expect(codeOf(() => prepareText(long, flite, 120))).toBe('AVATAR_ERR_INPUT_TEXT_TOO_LONG');
    expect(codeOf(() => prepareText(sentence, flite, 120))).toBeUndefined();
  });

  it('lists characters an English voice cannot say', () => {
    expect(findUnsayable('Hello 世界 😀!', flite)).toEqual(['世', '界', '😀']);
    expect(findUnsayable('Привет', flite)).toEqual(['П', 'р', 'и', 'в', 'е', 'т']);
    expect(findUnsayable('Café déjà vu, naïve', flite)).toEqual([]);
    let message = '';
    try {
      prepareText('Hello 世界', flite, 60);
    } catch (error) {
      expect(isAvatarError(error, 'AVATAR_ERR_INPUT_TEXT_UNSAYABLE')).toBe(true);
      message = (error as Error).message;
    }
    expect(message).toContain('世');
    expect(message).toContain('U+4E16');
  });

  it('lets espeak-ng voices read their own script', () => {
    expect(findUnsayable('Привет, мир', espeakRu)).toEqual([]);
    expect(findUnsayable('Привет 世界', espeakRu)).toEqual(['世', '界']);
    expect(findUnsayable('你好', { engine: 'espeak-ng', language: 'cmn' })).toEqual([]);
    expect(findUnsayable('I ❤ it', { engine: 'espeak-ng', language: 'en' })).toEqual(['❤']);
  });

  it('returns the normalised text as the text to speak', () => {
    expect(prepareText('Dr. Who paid $5.', flite, 60).spokenText).toBe('Doctor Who paid five dollars.');
  });
});
