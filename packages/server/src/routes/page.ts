import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { CONTENT_SECURITY_POLICY } from '../csp.js';
import { renderApiDocs } from './docs-page.js';
import type { OpenApiDocument } from './docs-page.js';
import type { Api, RouteContext } from './context.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The paths served without an API key: the page, its files and the API reference. */
export function isPublicPagePath(url: string): boolean {
  const path = url.split('?', 1)[0] ?? '';
  return path === '/' || path === '/docs' || /^\/static\/[0-9a-f]{12}\/[a-z0-9-]+\.(?:js|css|svg)$/.test(path);
}

/**
 * The folder holding index.html and its files: dist/page after a build (the build copies it
 * there, since tsc copies only TypeScript), src/page when running the sources. The second
 * candidate also covers a dist compiled without the copy step.
 */
export function pageDir(): string {
  const candidates = [new URL('../page/', import.meta.url), new URL('../../src/page/', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((dir) => existsSync(join(dir, 'index.html')));
  if (!found) throw new Error(`the web page files are missing (looked in ${candidates.join(' and ')}); rebuild @avatar/server`);
  return found;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const etagOf = (body: Buffer | string): string => `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;

export interface PageAssets {
  /** a digest of every file: part of each asset's URL, so a changed file gets a new URL */
  version: string;
  index: Asset;
  files: Map<string, Asset>;
}

/**
 * Files the page takes from npm packages, served beside its own under these names: hls.js (Apache-2.0)
 * plays a live job's HLS where the browser has no HLS of its own; its light ES module build, loaded by
 * the page only when it plays a live video.
 */
const PACKAGED: Readonly<Record<string, string>> = { 'hls.js': 'hls.js/dist/hls.light.min.mjs' };

/** Reads the page folder once: the files are small, and a fixed set means no request ever names a path. */
export function loadPageAssets(dir = pageDir()): PageAssets {
  const names = readdirSync(dir).filter((n) => TYPES[extname(n)] && statSync(join(dir, n)).isFile()).sort();
  const whole = createHash('sha256');
  const raw = new Map<string, Buffer>();
  const require = createRequire(import.meta.url);
  const sources: [string, string][] = [...names.map((name): [string, string] => [name, join(dir, name)]), ...Object.entries(PACKAGED).map(([name, id]): [string, string] => [name, require.resolve(id)])];
  for (const [name, path] of sources) {
    const body = readFileSync(path);
    raw.set(name, body);
    whole.update(name).update('\0').update(body).update('\0');
  }
  const version = whole.digest('hex').slice(0, 12);
  const files = new Map<string, Asset>();
  for (const [name, body] of raw) {
    if (name.endsWith('.html')) continue;
    files.set(name, { body, type: TYPES[extname(name)] ?? 'application/octet-stream', etag: etagOf(body) });
  }
  const html = (raw.get('index.html') ?? Buffer.from('')).toString('utf8').replaceAll('%VERSION%', version);
  const index: Asset = { body: Buffer.from(html), type: TYPES['.html'] ?? 'text/html', etag: etagOf(html) };
  return { version, index, files };
}

/** 304 when the browser already has it; otherwise the bytes, with the cache policy given. */
function sendAsset(request: FastifyRequest, reply: FastifyReply, asset: Asset, cacheControl: string, html: boolean): FastifyReply {
  void reply.header('cache-control', cacheControl).header('etag', asset.etag).header('x-content-type-options', 'nosniff');
  // the page works under exactly this policy: no inline script or style, blobs only for previews and results
  if (html) void reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
  const given = request.headers['if-none-match'];
  if (typeof given === 'string' && given.split(',').some((tag) => tag.trim().replace(/^W\//, '') === asset.etag)) {
    return reply.code(304).send();
  }
  return reply.type(asset.type).send(asset.body);
}

/**
 * GET / (the page), GET /static/<version>/<file> (its scripts, styles, icon; cached for a year,
 * since a new version changes the URL) and GET /docs (the API reference rendered from the
 * OpenAPI document). None of them needs a key; everything the page does goes through /v1, which does.
 */
export function registerPageRoutes(api: Api, _ctx: RouteContext, assets: PageAssets = loadPageAssets()): void {
  const hidden = { hide: true } as const;

  api.get('/', { schema: hidden }, async (request, reply) => sendAsset(request, reply, assets.index, 'no-cache', true));

  api.get('/static/:version/:file', {
    schema: { ...hidden, params: Type.Object({ version: Type.String({ maxLength: 64 }), file: Type.String({ maxLength: 100 }) }) },
  }, async (request, reply) => {
    const asset = assets.files.get(request.params.file);
    if (!asset) return reply.callNotFound();
    // an old page asking for an older version still gets today's file, just not cached for long
    const current = request.params.version === assets.version;
    return sendAsset(request, reply, asset, current ? 'public, max-age=31536000, immutable' : 'no-cache', false);
  });

  let docs: Asset | undefined;
  api.get('/docs', { schema: hidden }, async (request, reply) => {
    // rendered on first use: by then every route is registered and the document is complete
    if (!docs) {
      const html = renderApiDocs(api.swagger() as unknown as OpenApiDocument, { stylesheet: `/static/${assets.version}/app.css`, icon: `/static/${assets.version}/icon.svg` });
      docs = { body: Buffer.from(html), type: TYPES['.html'] ?? 'text/html', etag: etagOf(html) };
    }
    return sendAsset(request, reply, docs, 'no-cache', true);
  });
}
