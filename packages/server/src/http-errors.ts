import { AvatarError } from '@avatar/core';
import type { Logger } from '@avatar/core';
import type { FastifyError, FastifyInstance } from 'fastify';

export interface ErrorBody {
  error: { code: string; message: string; hint: string };
}

/** The one error shape every route answers with: code, message and hint; params and stacks stay here. */
export function errorBody(error: AvatarError): ErrorBody {
  return { error: { code: error.code, message: error.message, hint: error.hint } };
}

/** Fastify's own failures (parsing, validation, limits) as AvatarErrors with stable codes. */
export function toHttpError(error: FastifyError, bodyLimit: number): AvatarError {
  if (error instanceof AvatarError) return error;
  if (error.validation) {
    const part = error.validationContext ?? 'request';
    return new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part, reason: error.message });
  }
  const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (status === 413) return new AvatarError('AVATAR_ERR_HTTP_BODY_TOO_LARGE', { limit: bodyLimit });
  if (status === 415) return new AvatarError('AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA', { type: 'given' });
  if (status >= 400 && status < 500) {
    // fastify's client-error messages name the problem and nothing of the server
    return new AvatarError('AVATAR_ERR_HTTP_BAD_REQUEST', { reason: error.message.slice(0, 300) });
  }
  return new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'see the server log' });
}

export function installErrorHandlers(app: FastifyInstance, options: { bodyLimit: number; log: Logger }): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toHttpError(error, options.bodyLimit);
    if (mapped.httpStatus >= 500) {
      options.log.error(`${request.method} ${request.routeOptions.url ?? 'unknown route'} failed`, {
        code: mapped.code,
        reason: error instanceof AvatarError ? error.message : String(error),
        ...(error.stack && !(error instanceof AvatarError) && { stack: error.stack }),
      });
    }
    // a 5xx AvatarError from core keeps its code but its message may name server paths
    const safe = mapped.httpStatus >= 500 && mapped.code === 'AVATAR_ERR_INTERNAL' ? new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'see the server log' }) : mapped;
    void reply.code(safe.httpStatus).type('application/json; charset=utf-8').send(errorBody(safe));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] ?? '').slice(0, 200);
    const error = new AvatarError('AVATAR_ERR_HTTP_NOT_FOUND', { method: request.method, path });
    void reply.code(404).type('application/json; charset=utf-8').send(errorBody(error));
  });
}
