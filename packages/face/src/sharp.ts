import type sharp from 'sharp';
import { loadOnce } from '@avatar/core';

/**
 * sharp, loaded on first use: its native library takes about 0.1 s to load, which a command that never
 * touches an image (or a run still synthesising speech) should not wait for at start.
 */
export const loadSharp: () => Promise<typeof sharp> = loadOnce(() => import('sharp').then((module) => module.default));
