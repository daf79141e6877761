import { AvatarError, isAvatarError } from '@avatar/core';
import type { Logger } from '@avatar/core';
import type { FastifyError, FastifyInstance } from 'fastify';

export interface ErrorBody {
  error: { code: string; message: string; hint: string };
}

/** The one error shape every route answers with: code, message and hint; params and stacks stay here. */
export function errorBody(error: AvatarError): ErrorBody {
  return { error: { code: error.code, message: error.message, hint: error.hint } };
}

/** A client-sent header value fit to quote in a message: printable ASCII, at most 100 characters. */
export function quoteHeader(value: string | undefined): string {
  if (value === undefined || value.trim() === '') return '(none given)';
  const clean = value.replace(/[^\x20-\x7e]/g, '?').trim();
  return `"${clean.length > 100 ? `${clean.slice(0, 100)}...` : clean}"`;
}

/** Fastify's own failures (parsing, validation, limits) as AvatarErrors with stable codes. */
export function toHttpError(error: FastifyError, bodyLimit: number, contentType?: string): AvatarError {
  if (isAvatarError(error)) return error;
  if (error.validation) {
    const part = error.validationContext ?? 'request';
    return new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part, reason: error.message });
  }
  const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (status === 413) return new AvatarError('AVATAR_ERR_HTTP_BODY_TOO_LARGE', { limit: bodyLimit });
  if (status === 415) return new AvatarError('AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA', { type: quoteHeader(contentType) });
  if (status >= 400 && status < 500) {
    // fastify's client-error messages name the problem and nothing of the server
    return new AvatarError('AVATAR_ERR_HTTP_BAD_REQUEST', { reason: error.message.slice(0, 300) });
  }
  return new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'see the server log' });
}

/**
 * The error handler and the not-found answer. `redact` is applied to every message and hint sent:
 * an error raised deep in core may name a model file or a storage path.
 */
export function installErrorHandlers(app: FastifyInstance, options: { bodyLimit: number; log: Logger; redact: (text: string) => string }): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const contentType = request.headers['content-type'];
    const mapped = toHttpError(error, options.bodyLimit, typeof contentType === 'string' ? contentType : undefined);
    if (mapped.httpStatus >= 500) {
      // every 5xx says why in the log, at error level, under the id the answer carries (x-request-id)
      options.log.error(`${request.method} ${request.routeOptions.url ?? 'unknown route'} failed (request ${request.id}): ${mapped.code}: ${isAvatarError(error) ? error.message : String(error)}`, {
        requestId: request.id,
        code: mapped.code,
        ...(error.stack && !(isAvatarError(error)) && { stack: error.stack }),
      });
    }
    // an internal error's reason is for the log only; every other message loses its server paths
    const safe = mapped.code === 'AVATAR_ERR_INTERNAL' ? new AvatarError('AVATAR_ERR_INTERNAL', { reason: `see the server log for request ${request.id}` }) : mapped;
    const body = errorBody(safe);
    body.error.message = options.redact(body.error.message);
    body.error.hint = options.redact(body.error.hint);
    void reply.code(safe.httpStatus).type('application/json; charset=utf-8').send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] ?? '').slice(0, 200);
    const error = new AvatarError('AVATAR_ERR_HTTP_NOT_FOUND', { method: request.method, path });
    void reply.code(404).type('application/json; charset=utf-8').send(errorBody(error));
  });
}
