// A Server-Sent Events parser for a stream read with fetch(): EventSource cannot send an
// Authorization header, so the page reads the event stream itself. Follows the WHATWG
// event-stream rules the server uses: "field: value" lines, blank line ends an event,
// ":" starts a comment, data lines joined with "\n", CR, LF and CRLF all end a line.

/**
 * @typedef {{ event: string, data: string, id: string }} SseMessage
 */

export class SseParser {
  /** @param {(message: SseMessage) => void} onMessage */
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = '';
    this.event = '';
    this.data = [];
    this.lastId = '';
  }

  /** Feeds the next piece of text; it may end anywhere, even inside a line or a CRLF. */
  push(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) return;
      // a CR at the very end may be the first half of a CRLF split across two pieces
      if (match[0] === '\r' && match.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  /** The stream ended: a trailing CR ends its line; an event without its blank line is dropped, as the rules say. */
  end() {
    if (this.buffer.endsWith('\r')) this.line(this.buffer.slice(0, -1));
    this.buffer = '';
    this.event = '';
    this.data = [];
  }

  /** @param {string} line */
  line(line) {
    if (line === '') {
      if (this.data.length > 0) {
        this.onMessage({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastId });
      }
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
  }
}
