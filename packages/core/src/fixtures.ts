import { crc32, deflateSync } from 'node:zlib';

/**
 * A valid PNG whose header declares `width` x `height` pixels, with `zeros` bytes of zeros compressed
 * behind it (a few KB on disk): a decompression bomb, for tests of limits read from headers.
 */
export function pngDeclaring(width: number, height: number, zeros = 3 * width + 1): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(Buffer.alloc(zeros), { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}
