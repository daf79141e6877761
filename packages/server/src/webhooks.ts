import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress } from 'node:dns';
import { link, readFile, readdir, unlink } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import { join } from 'node:path';
import fp from 'fastify-plugin';
import { AvatarError, atomicWriteFile, ensureDir, isFinished, isJobId, writeWholeFile } from '@avatar/core';
import type { Job, JobParams, Logger } from '@avatar/core';

// ---- signing ----

export const SIGNATURE_HEADER = 'x-avatar-signature';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>` */
export function signWebhook(secret: string, body: string, unixSeconds: number = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * What a receiver does with the header: recompute the HMAC over the raw body and compare in
 * constant time; a timestamp further than `toleranceSeconds` from now is refused (replays).
 */
export function verifyWebhookSignature(secret: string, header: string | undefined, body: string, toleranceSeconds = 300, now: number = Date.now()): boolean {
  if (typeof header !== 'string') return false;
  const parts = new Map(header.split(',').map((p) => {
    const i = p.indexOf('=');
    return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
  }));
  const t = Number(parts.get('t'));
  const given = parts.get('v1') ?? '';
  if (!Number.isInteger(t) || !/^[0-9a-f]{64}$/.test(given)) return false;
  if (Math.abs(now / 1000 - t) > toleranceSeconds) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`, 'utf8').digest();
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}

// ---- which addresses a webhook may reach ----

const privateRanges = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) privateRanges.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) {
  privateRanges.addSubnet(net, bits, 'ipv6');
}

/** Loopback, private, link-local, carrier-grade NAT, multicast and unspecified addresses. */
export function isPrivateAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '').toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return privateRanges.check(mapped[1]!, 'ipv4');
  // URL parsing writes a mapped address in hex: [::ffff:127.0.0.1] becomes [::ffff:7f00:1]
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (hex) {
    const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
    return privateRanges.check(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, 'ipv4');
  }
  const family = isIP(a);
  if (family === 4) return privateRanges.check(a, 'ipv4');
  if (family === 6) return privateRanges.check(a, 'ipv6');
  return false;
}

/**
 * The webhook url as given in params, checked beyond its form (core's checkJobParams checks
 * that): with private addresses refused, a literal private address or a local name is refused
 * at once; names are resolved again at every delivery, so a name that later points inside is
 * refused then.
 */
export function checkWebhookUrl(raw: string, allowPrivate: boolean): URL {
  const refuse = (reason: string): AvatarError => new AvatarError('AVATAR_ERR_HTTP_WEBHOOK_REFUSED', { url: raw.slice(0, 200), reason });
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse('it is not a url');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw refuse('only http and https are delivered');
  if (!allowPrivate) {
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (isPrivateAddress(host)) throw refuse('it is a private address');
    if (host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.local') || host.endsWith('.internal')) throw refuse('it is a local name');
  }
  return url;
}

/** The webhook url of a job, or undefined. */
export function webhookUrlOf(params: JobParams): string | undefined {
  const w = params.webhook;
  if (w === null || typeof w !== 'object' || Array.isArray(w)) return undefined;
  return typeof w.url === 'string' ? w.url : undefined;
}

// ---- delivery state ----

export interface DeliveryState {
  jobId: string;
  url: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  maxAttempts: number;
  /** ISO time of the next try (pending only) */
  nextAttemptAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** HTTP status of the last answer, when there was one */
  lastStatus: number | null;
  lastError: string | null;
  /** the exact body sent each time: the job when it finished */
  body: string;
}

export interface WebhookOptions {
  /** HMAC key; default AVATAR_WEBHOOK_SECRET. Without one, webhook params are refused. */
  secret?: string;
  /** deliver to loopback, private and link-local networks too (default false; AVATAR_WEBHOOK_ALLOW_PRIVATE=1 turns it on) */
  allowPrivate?: boolean;
  /** tries in all (default 6) */
  attempts?: number;
  /** wait before the second try, ms (default 10 000); each later wait is `backoffFactor` times longer */
  backoffMs?: number;
  /** default 3: waits of 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min */
  backoffFactor?: number;
  /** one try, connecting to the end of the answer, gives up after this long, ms (default 10 000) */
  timeoutMs?: number;
}

/** Most bytes of an answer's body read: only the status matters, a receiver must not keep a try busy. */
export const MAX_ANSWER_BYTES = 4096;

interface ResolvedOptions {
  secret: string | undefined;
  allowPrivate: boolean;
  attempts: number;
  backoffMs: number;
  backoffFactor: number;
  timeoutMs: number;
}

export function resolveWebhookOptions(options: WebhookOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  const secret = options.secret ?? env.AVATAR_WEBHOOK_SECRET;
  const allowEnv = env.AVATAR_WEBHOOK_ALLOW_PRIVATE;
  return {
    secret: secret !== undefined && secret !== '' ? secret : undefined,
    // refused unless asked for: a url naming the server's own network is the classic request forgery
    allowPrivate: options.allowPrivate ?? (allowEnv !== undefined && /^(1|true|yes|on)$/i.test(allowEnv.trim())),
    attempts: Math.max(1, Math.floor(options.attempts ?? 6)),
    backoffMs: Math.max(0, options.backoffMs ?? 10_000),
    backoffFactor: Math.max(1, options.backoffFactor ?? 3),
    timeoutMs: Math.max(1, options.timeoutMs ?? 10_000),
  };
}

const MAX_IN_FLIGHT = 4;
const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error)).slice(0, 300);

/**
 * Sends each finished job that asked for a webhook to its url, signed, retrying with exponential
 * backoff. State lives in `<storage>/webhooks/<jobId>.json`, written atomically before and after
 * every try, so a restart picks up where the last process stopped (delivery is at least once:
 * receivers should treat a second delivery of the same jobId as a repeat).
 */
export class WebhookDispatcher {
  readonly options: ResolvedOptions;
  private readonly dir: string;
  private readonly log: Logger;
  private readonly redact: (job: Job) => Job;
  private readonly pending = new Map<string, DeliveryState>();
  private readonly inFlight = new Map<string, AbortController>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private started: Promise<void> | undefined;
  /** resolves when no try is running; for tests and shutdown */
  private idleWaiters: (() => void)[] = [];

  constructor(storageDir: string, options: { webhooks?: WebhookOptions; log: Logger; redact: (job: Job) => Job }) {
    this.options = resolveWebhookOptions(options.webhooks);
    this.dir = join(storageDir, 'webhooks');
    this.log = options.log;
    this.redact = options.redact;
  }

  get enabled(): boolean {
    return this.options.secret !== undefined;
  }

  /** Submit-time check of params.webhook: refused without a secret, or to a refused address. */
  checkParams(params: JobParams): void {
    if (params.webhook === undefined) return;
    if (!this.enabled) throw new AvatarError('AVATAR_ERR_HTTP_WEBHOOK_UNAVAILABLE');
    const url = webhookUrlOf(params);
    if (url === undefined) {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: 'webhook', problem: 'needs a url', expected: 'Give {"url": "https://..."}.' });
    }
    checkWebhookUrl(url, this.options.allowPrivate);
  }

  /** Loads the deliveries an earlier process left pending. */
  start(): Promise<void> {
    return (this.started ??= (async () => {
      await ensureDir(this.dir);
      for (const name of await readdir(this.dir)) {
        const id = name.endsWith('.json') ? name.slice(0, -5) : '';
        if (!isJobId(id)) continue;
        const state = await this.read(id);
        if (state?.status === 'pending') this.pending.set(id, state);
      }
      this.schedule();
    })());
  }

  /**
   * A job seen finished. Jobs without a webhook, or whose delivery was already set up (by this or
   * an earlier process), are passed over; calling this twice for a job is harmless.
   */
  async jobFinished(job: Job): Promise<void> {
    if (this.stopped || !isFinished(job.status)) return;
    const url = webhookUrlOf(job.params);
    if (url === undefined) return;
    await this.start();
    if (this.pending.has(job.jobId)) return;
    const now = new Date().toISOString();
    const state: DeliveryState = {
      jobId: job.jobId, url, status: 'pending', attempts: 0, maxAttempts: this.options.attempts,
      nextAttemptAt: now, createdAt: now, updatedAt: now, lastStatus: null, lastError: null,
      body: JSON.stringify(this.redact(job)),
    };
    if (!(await this.create(state))) return;
    if (!this.enabled) {
      await this.finish(state, 'failed', null, 'no webhook secret is configured on this server');
      return;
    }
    this.pending.set(job.jobId, state);
    this.schedule();
  }

  /** The delivery record of a job, if any. */
  async state(jobId: string): Promise<DeliveryState | undefined> {
    return isJobId(jobId) ? this.read(jobId) : undefined;
  }

  /** Stops retrying; a try under way is abandoned (not counted) and runs again after a restart. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const controller of this.inFlight.values()) controller.abort();
    if (this.inFlight.size > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private path(jobId: string): string {
    return join(this.dir, `${jobId}.json`);
  }

  /**
   * Creates the record of a new delivery: written whole to a temporary name, then linked into
   * place, which is exclusive and atomic at once — of several processes that see the job finish,
   * one delivers, and no reader ever sees half a record. A record already there that cannot be
   * read (damaged on disk) is replaced, so it never silently stops a delivery. False: another
   * process has it.
   */
  private async create(state: DeliveryState): Promise<boolean> {
    const target = this.path(state.jobId);
    const temp = join(this.dir, `.${state.jobId}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await writeWholeFile(temp, JSON.stringify(state, null, 2), { exclusive: true });
      await link(temp, target);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if ((await this.read(state.jobId)) !== undefined) return false;
      this.log.warn(`webhook state of ${state.jobId} is damaged; it is written again and the delivery starts over`);
      await atomicWriteFile(target, JSON.stringify(state, null, 2));
      return true;
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  private async read(jobId: string): Promise<DeliveryState | undefined> {
    try {
      const state = JSON.parse(await readFile(this.path(jobId), 'utf8')) as Partial<DeliveryState> | null;
      if (!isDeliveryState(state)) throw new Error('it is not a delivery record');
      return state;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`webhook state of ${jobId} cannot be read`, { reason: errorText(error) });
      return undefined;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    let next = Infinity;
    for (const s of this.pending.values()) {
      if (!this.inFlight.has(s.jobId)) next = Math.min(next, Date.parse(s.nextAttemptAt ?? '') || 0);
    }
    if (next === Infinity) return;
    this.timer = setTimeout(() => this.runDue(), Math.max(0, Math.min(next - Date.now(), 2 ** 31 - 1)));
    this.timer.unref();
  }

  private runDue(): void {
    const now = Date.now();
    for (const s of this.pending.values()) {
      if (this.inFlight.size >= MAX_IN_FLIGHT) break;
      if (this.inFlight.has(s.jobId) || (Date.parse(s.nextAttemptAt ?? '') || 0) > now) continue;
      const controller = new AbortController();
      this.inFlight.set(s.jobId, controller);
      void this.attempt(s, controller.signal).finally(() => {
        this.inFlight.delete(s.jobId);
        if (this.inFlight.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
        this.schedule();
      });
    }
    this.schedule();
  }

  private async attempt(state: DeliveryState, signal: AbortSignal): Promise<void> {
    const secret = this.options.secret;
    if (secret === undefined) {
      // a delivery left pending by a server that had a secret: unsigned (or signed with an empty
      // key) it would be forgeable by anyone, so it is not sent at all
      const reason = 'no webhook secret is configured on this server (AVATAR_WEBHOOK_SECRET); the delivery was not sent';
      try {
        await this.finish(state, 'failed', null, reason);
      } catch (error) {
        this.log.error(`webhook state of ${state.jobId} cannot be written`, { reason: errorText(error) });
      }
      this.log.warn(`webhook for ${state.jobId} given up`, { url: state.url, reason });
      return;
    }
    let status: number | null = null;
    let problem: string | null = null;
    try {
      status = await this.post(state, signal, secret);
      if (status < 200 || status > 299) problem = `answered HTTP ${status}`;
    } catch (error) {
      if (signal.aborted) return;
      problem = errorText(error);
    }
    if (signal.aborted) return;
    state.attempts += 1;
    try {
      if (problem === null) {
        await this.finish(state, 'delivered', status, null);
        this.log.info(`webhook for ${state.jobId} delivered`, { url: state.url, attempts: state.attempts });
      } else if (state.attempts >= state.maxAttempts) {
        await this.finish(state, 'failed', status, problem);
        this.log.warn(`webhook for ${state.jobId} given up after ${state.attempts} tries`, { url: state.url, reason: problem });
      } else {
        const wait = this.options.backoffMs * this.options.backoffFactor ** (state.attempts - 1);
        state.nextAttemptAt = new Date(Date.now() + wait).toISOString();
        state.lastStatus = status;
        state.lastError = problem;
        state.updatedAt = new Date().toISOString();
        await atomicWriteFile(this.path(state.jobId), JSON.stringify(state, null, 2));
        this.log.debug(`webhook for ${state.jobId} failed, trying again in ${Math.round(wait / 1000)}s`, { reason: problem });
      }
    } catch (error) {
      this.log.error(`webhook state of ${state.jobId} cannot be written`, { reason: errorText(error) });
    }
  }

  private async finish(state: DeliveryState, status: 'delivered' | 'failed', lastStatus: number | null, lastError: string | null): Promise<void> {
    this.pending.delete(state.jobId);
    Object.assign(state, { status, lastStatus, lastError, nextAttemptAt: null, updatedAt: new Date().toISOString() });
    await atomicWriteFile(this.path(state.jobId), JSON.stringify(state, null, 2));
  }

  /**
   * One POST; resolves with the HTTP status. Redirects are not followed. The whole try — lookup,
   * connect, send, answer — has one deadline, so a receiver that trickles its answer a byte at a
   * time cannot hold it; past MAX_ANSWER_BYTES the body is not read further.
   */
  private post(state: DeliveryState, stop: AbortSignal, secret: string): Promise<number> {
    const { allowPrivate, timeoutMs } = this.options;
    const url = checkWebhookUrl(state.url, allowPrivate);
    const body = Buffer.from(state.body, 'utf8');
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([stop, deadline]);
    return new Promise<number>((resolvePost, reject) => {
      const fail = (error: unknown): void => reject(deadline.aborted && !stop.aborted ? new Error(`no complete answer within ${timeoutMs} ms`) : error);
      const req = send(url, {
        method: 'POST',
        signal,
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'content-length': body.length,
          'user-agent': 'avatar-webhook/0.1',
          'x-avatar-job-id': state.jobId,
          'x-avatar-attempt': String(state.attempts + 1),
          [SIGNATURE_HEADER]: signWebhook(secret, state.body),
        },
        // checks the address actually connected to, so a name cannot be pointed inside later
        ...(!allowPrivate && { lookup: publicOnlyLookup }),
      }, (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_ANSWER_BYTES) {
            resolvePost(status);
            res.destroy();
          }
        });
        res.on('end', () => resolvePost(status));
        res.on('error', fail);
        // cut off without an error event: a promise settled by 'end' or the size cap ignores this
        res.on('close', () => fail(new Error('the answer was cut off')));
      });
      req.on('error', fail);
      req.end(body);
    });
  }
}

function isDeliveryState(value: Partial<DeliveryState> | null): value is DeliveryState {
  return value !== null && typeof value === 'object' && typeof value.jobId === 'string' && typeof value.url === 'string' &&
    typeof value.body === 'string' && typeof value.attempts === 'number' && typeof value.maxAttempts === 'number' &&
    (value.status === 'pending' || value.status === 'delivered' || value.status === 'failed');
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup that refuses private addresses (for deliveries with private addresses refused). */
function publicOnlyLookup(hostname: string, options: object, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, []);
    const list = addresses as LookupAddress[];
    const bad = list.find((a) => isPrivateAddress(a.address));
    if (bad || list.length === 0) {
      const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves to a private address (${bad?.address ?? 'none'})`);
      refused.code = 'EREFUSED_PRIVATE';
      return callback(refused, []);
    }
    if ((options as { all?: boolean }).all) return callback(null, list);
    return callback(null, list[0]!.address, list[0]!.family);
  });
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the server's webhook deliveries (plugin avatar-webhooks) */
    avatarWebhooks: WebhookDispatcher;
  }
}

/**
 * Webhook deliveries for jobs that end (plugin avatar-webhooks): deliveries an earlier run left
 * pending resume once the server is ready (a job seen ending before that starts the dispatcher itself).
 */
export const webhooksPlugin = fp<{ storageDir: string; webhooks?: WebhookOptions; log: Logger; redact: (job: Job) => Job }>(async (app, options) => {
  const dispatcher = new WebhookDispatcher(options.storageDir, { ...(options.webhooks && { webhooks: options.webhooks }), log: options.log, redact: options.redact });
  app.decorate('avatarWebhooks', dispatcher);
  app.avatarFinishes.onFinish((job) => dispatcher.jobFinished(job));
  app.addHook('onReady', async () => {
    await dispatcher.start();
  });
  app.addHook('onClose', async () => {
    // nothing new is handed over while the deliveries under way finish
    await app.avatarFinishes.stop();
    await dispatcher.stop();
  });
}, { name: 'avatar-webhooks', dependencies: ['avatar-finishes'], fastify: '5.x' });
