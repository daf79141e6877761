/**
 * The API reference at /docs: the OpenAPI document rendered as one plain HTML page on the server,
 * so it needs no script, no key in the browser and nothing from elsewhere.
 */

/** A JSON Schema as the OpenAPI document holds it; only the parts the page shows are named. */
export interface JsonSchema {
  $ref?: string;
  title?: string;
  description?: string;
  type?: string | string[];
  format?: string;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  default?: unknown;
  nullable?: boolean;
}

interface MediaType {
  schema?: JsonSchema;
}

interface Operation {
  summary?: string;
  description?: string;
  parameters?: { name: string; in: string; required?: boolean; description?: string; schema?: JsonSchema }[];
  requestBody?: { required?: boolean; description?: string; content?: Record<string, MediaType> };
  responses?: Record<string, { description?: string; content?: Record<string, MediaType> }>;
  security?: Record<string, string[]>[];
}

export interface OpenApiDocument {
  openapi?: string;
  info?: { title?: string; version?: string; description?: string };
  paths?: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, JsonSchema> };
  security?: Record<string, string[]>[];
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

const escapeHtml = (value: unknown): string =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

const code = (value: unknown): string => `<code>${escapeHtml(value)}</code>`;
const slug = (value: string): string => value.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** Renders schemas as nested lists; big objects seen before are named once and linked after. */
class SchemaWriter {
  private readonly seen = new Map<string, { id: string; where: string }>();
  private counter = 0;
  /** where the schema being written appears, e.g. "GET /v1/jobs, answer 200": named when it is linked later */
  where = '';

  constructor(private readonly components: Record<string, JsonSchema>) {}

  componentTitle(ref: string): string {
    const name = ref.replace('#/components/schemas/', '');
    return this.components[name]?.title ?? name;
  }

  private constraints(s: JsonSchema): string[] {
    const out: string[] = [];
    if (s.format) out.push(`format ${s.format}`);
    if (s.pattern) out.push(`matches ${code(s.pattern)}`);
    if (s.minLength !== undefined && s.maxLength !== undefined) out.push(`${s.minLength}–${s.maxLength} characters`);
    else if (s.minLength !== undefined) out.push(`at least ${s.minLength} characters`);
    else if (s.maxLength !== undefined) out.push(`at most ${s.maxLength} characters`);
    if (s.minimum !== undefined) out.push(`≥ ${s.minimum}`);
    if (s.exclusiveMinimum !== undefined) out.push(`> ${s.exclusiveMinimum}`);
    if (s.maximum !== undefined) out.push(`≤ ${s.maximum}`);
    if (s.exclusiveMaximum !== undefined) out.push(`< ${s.exclusiveMaximum}`);
    if (s.minItems !== undefined) out.push(`at least ${s.minItems} items`);
    if (s.maxItems !== undefined) out.push(`at most ${s.maxItems} items`);
    if (s.default !== undefined) out.push(`default ${code(JSON.stringify(s.default))}`);
    return out;
  }

  /** The literal values a schema allows, when it is nothing but literals (TypeBox unions of literals). */
  private literals(s: JsonSchema): unknown[] | undefined {
    if (s.const !== undefined) return [s.const];
    if (Array.isArray(s.enum)) return s.enum;
    const options = s.anyOf ?? s.oneOf;
    if (!options) return undefined;
    const values: unknown[] = [];
    for (const option of options) {
      const inner = this.literals(option);
      if (!inner) return undefined;
      values.push(...inner);
    }
    return values;
  }

  /** One line saying what the value is, followed by its parts when it has any. */
  render(s: JsonSchema | undefined, depth = 0): string {
    if (!s || Object.keys(s).length === 0 || (s.description && Object.keys(s).length === 1)) {
      return `<span class="type">any value</span>${s?.description ? ` — ${escapeHtml(s.description)}` : ''}`;
    }
    if (s.$ref) {
      const name = s.$ref.replace('#/components/schemas/', '');
      return `<a href="#schema-${slug(name)}">${escapeHtml(this.componentTitle(s.$ref))}</a>`;
    }
    const note = [s.description ? escapeHtml(s.description) : '', ...this.constraints(s)].filter(Boolean);
    const tail = note.length > 0 ? ` <span class="constraint">— ${note.join('; ')}</span>` : '';
    const values = this.literals(s);
    if (values) return `<span class="type">one of</span> ${values.map((v) => code(typeof v === 'string' ? v : JSON.stringify(v))).join(', ')}${tail}`;
    if (depth > 8) return '<span class="type">…</span>';
    const options = s.anyOf ?? s.oneOf;
    if (options) {
      const nullable = options.filter((o) => o.type !== 'null');
      if (nullable.length === 1 && nullable.length < options.length) return `${this.render(nullable[0], depth)} <span class="type">or null</span>${tail}`;
      return `<span class="type">one of</span>${tail}<ul class="schema">${options.map((o) => `<li>${this.render(o, depth + 1)}</li>`).join('')}</ul>`;
    }
    if (s.allOf) return `<span class="type">all of</span>${tail}<ul class="schema">${s.allOf.map((o) => `<li>${this.render(o, depth + 1)}</li>`).join('')}</ul>`;
    const types = (Array.isArray(s.type) ? s.type : [s.type ?? (s.properties ? 'object' : 'any value')]).filter((t) => t !== 'null');
    const orNull = (Array.isArray(s.type) && s.type.includes('null')) || s.nullable ? ' <span class="type">or null</span>' : '';
    if (types.length === 1 && types[0] === 'array') {
      return `<span class="type">array of</span> ${this.render(s.items, depth + 1)}${orNull}${tail}`;
    }
    if (types.length === 1 && types[0] === 'object') return this.object(s, depth, orNull, tail);
    const typeName = s.type === 'string' && s.format === 'binary' ? 'file (bytes)' : types.join(' or ');
    return `<span class="type">${escapeHtml(typeName)}</span>${orNull}${tail}`;
  }

  private object(s: JsonSchema, depth: number, orNull: string, tail: string): string {
    const properties = Object.entries(s.properties ?? {});
    const extra = s.additionalProperties;
    if (properties.length === 0) {
      if (extra && typeof extra === 'object' && Object.keys(extra).length > 0) return `<span class="type">map of names to</span> ${this.render(extra, depth + 1)}${orNull}${tail}`;
      return `<span class="type">object</span>${orNull}${tail}`;
    }
    // a big shape met before (the job object answers many routes) is shown once and linked after
    const key = properties.length >= 4 ? JSON.stringify(s) : undefined;
    const before = key ? this.seen.get(key) : undefined;
    if (before) return `<span class="type">object</span>, <a href="#${before.id}">the same as in ${escapeHtml(before.where)}</a>${orNull}${tail}`;
    const id = key ? `shape-${++this.counter}` : undefined;
    if (key && id) this.seen.set(key, { id, where: this.where });
    const required = new Set(s.required ?? []);
    const items = properties.map(([name, value]) =>
      `<li>${code(name)}${required.has(name) ? ' <span class="req">required</span>' : ''}: ${this.render(value, depth + 1)}</li>`);
    if (extra === false) items.push('<li class="constraint">no other fields</li>');
    return `<span class="type"${id ? ` id="${id}"` : ''}>object</span>${orNull}${tail}<ul class="schema">${items.join('')}</ul>`;
  }
}

export interface DocsPageOptions {
  stylesheet: string;
  icon?: string;
}

/** The whole reference page: a list of routes, then each route's parameters, body and answers, then the named schemas. */
export function renderApiDocs(doc: OpenApiDocument, options: DocsPageOptions): string {
  const components = doc.components?.schemas ?? {};
  const writer = new SchemaWriter(components);
  const title = doc.info?.title ?? 'HTTP API';
  const routes: { method: string; path: string; op: Operation; id: string }[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (op) routes.push({ method: method.toUpperCase(), path, op, id: `route-${slug(`${method} ${path}`)}` });
    }
  }
  const secured = (op: Operation): boolean => (op.security ?? doc.security ?? []).length > 0;
  const anySecured = routes.some((r) => secured(r.op));

  const toc = routes.map((r) => `<li><a href="#${r.id}"><span class="method">${r.method}</span> ${escapeHtml(r.path)}</a>${r.op.summary ? ` — ${escapeHtml(r.op.summary)}` : ''}</li>`).join('\n');

  const sections = routes.map(({ method, path, op, id }) => {
    const parts: string[] = [`<section class="route" aria-labelledby="${id}"><h3 id="${id}"><span class="method">${method}</span> ${code(path)}</h3>`];
    if (op.summary) parts.push(`<p>${escapeHtml(op.summary)}</p>`);
    if (op.description) parts.push(`<p>${escapeHtml(op.description)}</p>`);
    if (anySecured) parts.push(`<p class="constraint">${secured(op) ? 'Needs <code>Authorization: Bearer &lt;key&gt;</code> when the server has API keys.' : 'No key needed.'}</p>`);
    const params = op.parameters ?? [];
    if (params.length > 0) {
      parts.push('<h4>Parameters</h4><table><thead><tr><th scope="col">Name</th><th scope="col">In</th><th scope="col">Value</th></tr></thead><tbody>');
      for (const p of params) {
        const what = [p.required ? '<span class="req">required</span>' : 'optional', p.description ? escapeHtml(p.description) : ''].filter(Boolean).join(', ');
        writer.where = `${method} ${path}, parameter ${p.name}`;
        parts.push(`<tr><td>${code(p.name)}</td><td>${escapeHtml(p.in)}</td><td>${what}: ${writer.render(p.schema)}</td></tr>`);
      }
      parts.push('</tbody></table>');
    }
    if (op.requestBody) {
      for (const [type, media] of Object.entries(op.requestBody.content ?? {})) {
        writer.where = `${method} ${path}, body`;
        parts.push(`<h4>Body (${code(type)}${op.requestBody.required ? ', required' : ''})</h4><div>${writer.render(media.schema)}</div>`);
      }
    }
    const answers = Object.entries(op.responses ?? {});
    if (answers.length > 0) {
      parts.push('<h4>Answers</h4><ul class="schema">');
      for (const [status, answer] of answers) {
        const media = Object.entries(answer.content ?? {});
        const description = answer.description && answer.description !== 'Default Response' ? ` <span class="constraint">${escapeHtml(answer.description)}</span>` : '';
        writer.where = `${method} ${path}, answer ${status}`;
        const bodies = media.map(([, m]) => writer.render(m.schema)).join(' ');
        parts.push(`<li><strong>${escapeHtml(status)}</strong>${description}${bodies ? `: ${bodies}` : ''}</li>`);
      }
      parts.push('</ul>');
    }
    parts.push('</section>');
    return parts.join('\n');
  }).join('\n');

  const named = Object.entries(components).map(([name, schema]) =>
    `<section class="route" aria-labelledby="schema-${slug(name)}"><h3 id="schema-${slug(name)}">${escapeHtml(schema.title ?? name)}</h3><div>${writer.render({ ...schema, title: undefined })}</div></section>`).join('\n');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}: reference</title>
${options.icon ? `<link rel="icon" href="${escapeHtml(options.icon)}" type="image/svg+xml">\n` : ''}<link rel="stylesheet" href="${escapeHtml(options.stylesheet)}">
</head>
<body class="docs">
<header class="top">
<h1>${escapeHtml(title)}${doc.info?.version ? ` <span class="muted">${escapeHtml(doc.info.version)}</span>` : ''}</h1>
${doc.info?.description ? `<p>${escapeHtml(doc.info.description)}</p>` : ''}
<nav aria-label="More"><a href="/">The web page</a> · <a href="/openapi.json">OpenAPI document (JSON)</a></nav>
</header>
<main>
<section class="panel" aria-labelledby="routes-h">
<h2 id="routes-h">Routes</h2>
<p>Every error answer is <code>{"error": {"code", "message", "hint"}}</code>.${anySecured ? ' Routes marked so need an API key as <code>Authorization: Bearer &lt;key&gt;</code> when the server has keys.' : ''}</p>
<ul class="toc">
${toc}
</ul>
</section>
<section class="panel" aria-labelledby="details-h">
<h2 id="details-h">Details</h2>
${sections}
</section>
${named ? `<section class="panel" aria-labelledby="schemas-h">\n<h2 id="schemas-h">Named schemas</h2>\n${named}\n</section>` : ''}
</main>
</body>
</html>
`;
}
