import { appendFile, cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderApiDocs } from './docs-page.js';
import { isPublicPagePath, loadPageAssets, pageDir } from './page.js';

describe('the page: which paths are public', () => {
  it('lets the page, its files and /docs through, and nothing under /v1 or beside them', () => {
    for (const path of ['/', '/?from=mail', '/docs', '/docs?x=1', '/static/0123456789ab/app.js', '/static/0123456789ab/app.css', '/static/0123456789ab/icon.svg']) {
      expect(isPublicPagePath(path), path).toBe(true);
    }
    for (const path of ['/v1/jobs', '/v1/avatars', '/openapi.json', '/metrics', '/docs/', '/docs/x', '//', '/static/abc/app.js',
      '/static/0123456789ab/../../v1/jobs', '/static/0123456789ab/app.js/x', '/static/0123456789ab/app.json', '/index.html', '/%2e%2e/v1/jobs']) {
      expect(isPublicPagePath(path), path).toBe(false);
    }
  });
});

describe('the page files', () => {
  it('are all there, with every file the page names under its current version', () => {
    const assets = loadPageAssets();
    expect(assets.version).toMatch(/^[0-9a-f]{12}$/);
    const html = assets.index.body.toString('utf8');
    expect(html).not.toContain('%VERSION%');
    const named = [...html.matchAll(/\/static\/([0-9a-f]{12})\/([a-z0-9-]+\.[a-z]+)/g)];
    expect(named.length).toBeGreaterThanOrEqual(3);
    for (const [, version, file] of named) {
      expect(version).toBe(assets.version);
      expect(assets.files.has(file ?? ''), file).toBe(true);
    }
    // the modules app.js imports are served too
    const app = assets.files.get('app.js')?.body.toString('utf8') ?? '';
    for (const [, file] of app.matchAll(/from '\.\/([a-z0-9-]+\.js)'/g)) expect(assets.files.has(file ?? ''), file).toBe(true);
    // no inline script or style: the page must work under a policy that forbids them
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=/i);
  });

  it('keeps its version while the files stay the same, and gets a new one when any changes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-page-'));
    try {
      await cp(pageDir(), dir, { recursive: true });
      const first = loadPageAssets(dir);
      expect(loadPageAssets(dir).version).toBe(first.version);
      await appendFile(join(dir, 'app.css'), '\n/* changed */\n');
      const second = loadPageAssets(dir);
      expect(second.version).not.toBe(first.version);
      expect(second.files.get('app.css')?.etag).not.toBe(first.files.get('app.css')?.etag);
      expect(second.files.get('app.js')?.etag).toBe(first.files.get('app.js')?.etag);
      expect(second.index.body.toString('utf8')).toContain(`/static/${second.version}/app.js`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the API reference', () => {
  it('escapes whatever the document says and links named schemas', () => {
    const html = renderApiDocs({
      info: { title: 'T <b>', version: '1' },
      paths: {
        '/v1/things/{id}': {
          get: {
            summary: 'a <script>alert(1)</script> thing',
            parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^<x>$' } }],
            responses: {
              '200': { description: 'ok', content: { 'application/json': { schema: { type: 'object', required: ['n'], properties: { n: { type: 'integer', minimum: 1 }, tag: { anyOf: [{ type: 'string', enum: ['a'] }, { type: 'string', enum: ['b'] }] } }, additionalProperties: false } } } },
              '404': { description: 'Default Response', content: { 'application/json': { schema: { $ref: '#/components/schemas/def-0' } } } },
            },
          },
        },
      },
      components: { schemas: { 'def-0': { title: 'ErrorBody', type: 'object', properties: { error: { type: 'string' } } } } },
      security: [{ bearer: [] }],
    }, { stylesheet: '/static/x/app.css' });
    expect(html).not.toContain('<script>');
    expect(html).toContain('a &lt;script&gt;alert(1)&lt;/script&gt; thing');
    expect(html).toContain('T &lt;b&gt;');
    expect(html).toContain('<code>^&lt;x&gt;$</code>');
    expect(html).toContain('<a href="#schema-def-0">ErrorBody</a>');
    expect(html).toContain('id="schema-def-0"');
    expect(html).toMatch(/<code>n<\/code> <span class="req">required<\/span>: <span class="type">integer<\/span> <span class="constraint">— ≥ 1<\/span>/);
    expect(html).toContain('<span class="type">one of</span> <code>a</code>, <code>b</code>');
    expect(html).toContain('no other fields');
    expect(html).toContain('Needs <code>Authorization: Bearer');
  });
});
