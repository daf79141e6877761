// Playing a live job while it is made: its HLS playlist (/v1/jobs/:id/live/playlist.m3u8) in the page's
// <video>, through hls.js (served by this server, loaded only when needed) or the browser's own HLS.
import { getApiKey } from './api.js';

/** Resolves once the job's playlist exists (its first second is encoded), or null when the signal aborts. */
async function playlistReady(url, signal) {
  for (;;) {
    if (signal.aborted) return null;
    const key = getApiKey();
    const response = await fetch(url, { method: 'GET', headers: key ? { authorization: `Bearer ${key}` } : {}, signal }).catch(() => null);
    if (response?.ok) return url;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * Starts playing job `jobId`'s live video in `video` as soon as its first segment exists; returns a stop
 * function (the page stops it when the finished file takes over). `onPlaying` is told when frames show,
 * with the player: 'hls.js', or 'native' (the browser's own HLS).
 */
export function playLive(video, jobId, { onPlaying } = {}) {
  const controller = new AbortController();
  let hls;
  const url = `/v1/jobs/${encodeURIComponent(jobId)}/live/playlist.m3u8`;
  void (async () => {
    if (!(await playlistReady(url, controller.signal))) return;
    const native = video.canPlayType('application/vnd.apple.mpegurl') !== '' && !getApiKey();
    if (!native) {
      const { default: Hls } = await import('./hls.js');
      if (controller.signal.aborted || !Hls.isSupported()) return;
      hls = new Hls({
        // fMP4 needs no transmuxing: no worker (the page's policy allows none), and the key on every request
        enableWorker: false,
        xhrSetup: (xhr) => {
          const key = getApiKey();
          if (key) xhr.setRequestHeader('authorization', `Bearer ${key}`);
        },
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else {
      video.src = url;
    }
    video.addEventListener('playing', () => onPlaying?.(native ? 'native' : 'hls.js'), { once: true });
    video.play().catch(() => {}); // a browser that wants a click first shows its play button
  })();
  return () => {
    controller.abort();
    hls?.destroy();
    hls = undefined;
  };
}
