/**
 * Phoneme -> mouth target table for the ARPAbet-like phone sets of flite and festival (lower case,
 * stress digits ignored). Values are targets, not poses held for the whole phone: the track smooths
 * between them. `null` means "transparent": the phone does not constrain that articulator (the lips
 * during t, k, h...), so it takes its shape from the neighbouring phones, which is how coarticulation
 * works for those sounds.
 */
export interface VisemeTarget {
  /** 0 closed .. 1 wide open */
  jaw: number;
  /** -1 rounded and narrow .. +1 spread */
  width: number | null;
  /** 1 = lips pressed together (p, b, m) */
  closure: number;
  /** 0..1 how much of the upper teeth shows */
  teeth: number | null;
  /** 1 = lower lip against the upper teeth (f, v) */
  lipToTeeth: number;
}

export type VisemeClass =
  | 'silence' | 'open' | 'mid' | 'close-spread' | 'rounded' | 'bilabial' | 'labiodental'
  | 'dental' | 'sibilant' | 'postalveolar' | 'alveolar' | 'velar' | 'approximant' | 'glottal';

const t = (cls: VisemeClass, jaw: number, width: number | null, teeth: number | null, closure = 0, lipToTeeth = 0): [VisemeClass, VisemeTarget] =>
  [cls, { jaw, width, closure, teeth, lipToTeeth }];

export const REST: VisemeTarget = { jaw: 0, width: 0, closure: 0, teeth: 0, lipToTeeth: 0 };

/** The viseme map; docs/lipsync.md prints the same table. */
export const VISEMES: Readonly<Record<string, readonly [VisemeClass, VisemeTarget]>> = {
  pau: t('silence', 0, 0, 0), sil: t('silence', 0, 0, 0), 'h#': t('silence', 0, 0, 0), '_': t('silence', 0, 0, 0),
  // open vowels: the jaw drops
  aa: t('open', 0.9, 0.05, 0.35), ae: t('open', 0.8, 0.35, 0.5), ah: t('open', 0.65, 0.1, 0.35),
  ao: t('open', 0.7, -0.35, 0.25), aw: t('open', 0.75, -0.2, 0.3), ay: t('open', 0.8, 0.25, 0.45),
  // mid and close vowels
  eh: t('mid', 0.55, 0.35, 0.55), ey: t('mid', 0.45, 0.45, 0.6), ax: t('mid', 0.4, 0.05, 0.35),
  ih: t('mid', 0.38, 0.35, 0.55), ix: t('mid', 0.35, 0.3, 0.5), er: t('mid', 0.35, -0.35, 0.3),
  axr: t('mid', 0.35, -0.3, 0.3), iy: t('close-spread', 0.28, 0.65, 0.7),
  // rounded vowels: lips round and narrow, little teeth
  ow: t('rounded', 0.5, -0.65, 0.15), oy: t('rounded', 0.55, -0.45, 0.2), uh: t('rounded', 0.35, -0.45, 0.15),
  uw: t('rounded', 0.25, -0.85, 0.05), w: t('rounded', 0.12, -0.9, 0),
  // lips pressed
  p: t('bilabial', 0.04, 0, 0, 1), b: t('bilabial', 0.04, 0, 0, 1), m: t('bilabial', 0.04, 0, 0, 1), em: t('bilabial', 0.04, 0, 0, 1),
  // lower lip to upper teeth
  f: t('labiodental', 0.1, 0.1, 0.75, 0, 1), v: t('labiodental', 0.1, 0.1, 0.75, 0, 1),
  // tongue between the teeth
  th: t('dental', 0.2, 0.1, 0.8), dh: t('dental', 0.2, 0.1, 0.8),
  // teeth close together and showing
  s: t('sibilant', 0.08, 0.3, 0.9), z: t('sibilant', 0.08, 0.3, 0.9),
  sh: t('postalveolar', 0.12, -0.5, 0.7), zh: t('postalveolar', 0.12, -0.5, 0.7),
  ch: t('postalveolar', 0.12, -0.45, 0.7), jh: t('postalveolar', 0.12, -0.45, 0.7),
  // tongue consonants: the lips are free, so width and teeth follow the neighbours
  t: t('alveolar', 0.18, null, null), d: t('alveolar', 0.18, null, null), n: t('alveolar', 0.18, null, null),
  en: t('alveolar', 0.18, null, null), l: t('alveolar', 0.25, null, null), el: t('alveolar', 0.25, null, null),
  dx: t('alveolar', 0.2, null, null), nx: t('alveolar', 0.2, null, null),
  k: t('velar', 0.25, null, null), g: t('velar', 0.25, null, null), ng: t('velar', 0.25, null, null),
  r: t('approximant', 0.2, -0.5, 0.2), y: t('approximant', 0.22, 0.45, 0.5),
  hh: t('glottal', 0.35, null, null), hv: t('glottal', 0.35, null, null),
};

/** The target for an engine phone, or undefined for a symbol outside the table. */
export function visemeFor(phoneme: string): readonly [VisemeClass, VisemeTarget] | undefined {
  return VISEMES[phoneme.toLowerCase().replace(/[0-9]+$/, '')];
}
