/** The stages an engine can run, in the order data flows. */
export const STAGE_KINDS = ['voice', 'tts', 'face', 'lipsync', 'encode', 'inspect'] as const;
/**
 * voice: reference recording -> voice settings (voice_clone); tts: text -> speech;
 * face: photo -> avatar; lipsync: avatar + speech -> frames; encode: frames or still + audio -> video;
 * inspect: a finished video -> quality figures measured from the outside.
 */
export type StageKind = (typeof STAGE_KINDS)[number];
