// The avatar web page: text, voice and photo in; a job submitted, followed live, played and
// downloaded. Plain DOM, no framework; every request goes through api.js.
import { ApiError, api, fetchBlob, getApiKey, hasApiKey, onUnauthorized, setApiKey, streamEvents } from './api.js';
import { playLive } from './live.js';

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
};

/** What the stages are called on screen; an unknown stage shows its own name. */
const STAGE_LABELS = {
  load_profile: 'Loading the voice',
  match_voice: 'Matching the voice',
  synthesize_speech: 'Speaking the text',
  validate_avatar: 'Checking the photo',
  generate_lipsync: 'Moving the lips',
  encode_video: 'Encoding the video',
  inspect_video: 'Checking the video',
  cleanup: 'Tidying up',
};
const FULL_PIPELINE_STAGES = ['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup'];
const stageLabel = (stage) => STAGE_LABELS[stage] ?? String(stage).replaceAll('_', ' ');

const STATUS_LABELS = { pending: 'Waiting', running: 'Running', completed: 'Done', failed: 'Failed', cancelled: 'Cancelled' };
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
/** stages of a live job by which its video is being encoded (or is, whole: the stream plays until the file takes over) */
const LIVE_STAGES = new Set(['generate_lipsync', 'encode_video', 'inspect_video']);
const RESULT_EXTENSIONS = { 'video/mp4': '.mp4', 'video/webm': '.webm', 'video/quicktime': '.mov', 'audio/wav': '.wav', 'image/png': '.png' };

/** Builds an element: el('p', {class: 'x'}, 'text', child). Text is always text, never markup. */
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A message with the server's hint under it; kind picks the look (ok, error, busy). */
function say(target, kind, message, hint) {
  target.replaceChildren();
  target.className = `status ${kind ?? ''}`.trim();
  if (!message) return;
  target.append(el('span', { class: 'message' }, message));
  if (hint) target.append(' ', el('span', { class: 'hint' }, hint));
}

const errorText = (error) => (error instanceof ApiError ? [error.message, error.hint] : [String(error?.message ?? error), '']);

// ---------------------------------------------------------------- the API key

const keyBox = $('key-box');
const keyInput = $('key');

function showKeyState() {
  $('key-state').textContent = hasApiKey() ? '(set for this tab)' : '(none)';
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  keyInput.value = '';
  showKeyState();
  say($('key-status'), 'ok', hasApiKey() ? 'The key will be sent with every request from this tab.' : 'No key is used.');
  void loadEverything();
});
$('key-forget').addEventListener('click', () => {
  setApiKey('');
  keyInput.value = '';
  showKeyState();
  say($('key-status'), 'ok', 'The key is forgotten.');
});
onUnauthorized(() => {
  if (keyBox.open) return;
  keyBox.open = true;
  say($('key-status'), 'error', hasApiKey() ? 'The server did not accept this key.' : 'This server needs an API key.', 'Type it above and choose "Use this key".');
  keyInput.focus();
});

// ---------------------------------------------------------------- voices

const voiceSelect = $('voice');

$('blink-rate').addEventListener('input', () => {
  $('blink-rate-value').value = $('blink-rate').value;
});

/** an engine voice's option value: "engine:<engine>:<voice>" (saved profiles' values are their ids) */
const ENGINE_VOICE = /^engine:([^:]+):(.+)$/;

async function loadVoices() {
  const [{ voices }, engine] = await Promise.all([
    api.get('/v1/voices'),
    // the engines' own voices, in every language they speak; a server without them still lists profiles
    api.get('/v1/engine-voices').catch(() => ({ voices: [] })),
  ]);
  const chosen = voiceSelect.value;
  const options = [el('option', { value: '' }, 'Default voice')];
  const saved = (voices ?? []).filter((voice) => typeof voice.voiceProfileId === 'string');
  if (saved.length) {
    options.push(el('optgroup', { label: 'Saved voices' }, ...saved.map((voice) => {
      const detail = [voice.engine, voice.voice].filter(Boolean).join(' / ');
      return el('option', { value: voice.voiceProfileId }, detail ? `${voice.name} (${detail})` : voice.name ?? voice.voiceProfileId);
    })));
  }
  // one group per engine, each voice by its language
  const byEngine = new Map();
  for (const v of engine.voices ?? []) byEngine.set(v.engine, [...(byEngine.get(v.engine) ?? []), v]);
  for (const [name, list] of byEngine) {
    options.push(el('optgroup', { label: `${name} voices` }, ...list.map((v) =>
      el('option', { value: `engine:${v.engine}:${v.voice}`, lang: v.language }, `${v.language} · ${v.description ?? v.voice}${v.gender ? ` (${v.gender})` : ''}`))));
  }
  voiceSelect.replaceChildren(...options);
  if ([...voiceSelect.options].some((o) => o.value === chosen)) voiceSelect.value = chosen;
}

/** engine voices already saved as a profile on this page, by option value */
const madeProfiles = new Map();

/** The voice profile a job names: the chosen one, or one made once from the chosen engine voice. */
async function chosenProfile() {
  const value = voiceSelect.value;
  const engineVoice = ENGINE_VOICE.exec(value);
  if (!engineVoice) return value || undefined;
  if (!madeProfiles.has(value)) {
    const { voice } = await api.post('/v1/voices/from-engine', { engine: engineVoice[1], voice: engineVoice[2] });
    madeProfiles.set(value, voice.voiceProfileId);
  }
  return madeProfiles.get(value);
}

$('voice-upload').addEventListener('click', async () => {
  const status = $('voice-status');
  const file = $('voice-file').files?.[0];
  if (!file) {
    say(status, 'error', 'Choose a recording first.');
    $('voice-file').focus();
    return;
  }
  const form = new FormData();
  const name = $('voice-name').value.trim();
  if (name) form.append('name', name);
  form.append('sample', file, file.name);
  say(status, 'busy', 'Measuring the voice…');
  try {
    const { voice } = await api.upload('/v1/voices', form);
    await loadVoices().catch(() => {
      voiceSelect.append(el('option', { value: voice.voiceProfileId }, voice.name ?? voice.voiceProfileId));
    });
    voiceSelect.value = voice.voiceProfileId;
    say(status, 'ok', `Saved as "${voice.name ?? voice.voiceProfileId}" and chosen for this video.`);
  } catch (error) {
    say(status, 'error', ...errorText(error));
  }
});

// ---------------------------------------------------------------- the photo and its face check

const photoInput = $('photo');
const preview = $('photo-preview');
const verdict = $('photo-verdict');
/** The avatar the server accepted for the chosen photo; undefined while none is usable. */
let avatar;
let photoCheck = 0;

function showVerdict(kind, title, items, hint) {
  verdict.replaceChildren();
  verdict.className = `verdict ${kind}`;
  verdict.append(el('p', { class: 'verdict-title' }, title));
  if (items.length > 0) verdict.append(el('ul', {}, ...items.map((item) => el('li', {}, item))));
  if (hint) verdict.append(el('p', { class: 'hint' }, hint));
}

photoInput.addEventListener('change', async () => {
  const check = ++photoCheck;
  avatar = undefined;
  if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
  const file = photoInput.files?.[0];
  if (!file) {
    preview.hidden = true;
    preview.removeAttribute('src');
    verdict.replaceChildren();
    return;
  }
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  showVerdict('busy', 'Looking for a face…', []);
  const form = new FormData();
  form.append('photo', file, file.name);
  try {
    const answer = await api.upload('/v1/avatars', form);
    if (check !== photoCheck) return; // another photo was chosen meanwhile
    avatar = answer.avatar;
    const face = avatar.face ?? {};
    const score = typeof face.score === 'number' ? ` (confidence ${Math.round(face.score * 100)}%)` : '';
    showVerdict('ok', `✓ Usable: a face was found${score}.`, face.warnings ?? []);
    verdict.dataset.verdict = 'usable';
  } catch (error) {
    if (check !== photoCheck) return;
    if (error instanceof ApiError && error.reasons.length > 0) {
      showVerdict('error', '✗ This photo cannot be used:', error.reasons.map((r) => (r.hint ? `${r.message.replace(/\.?$/, '.')} ${r.hint}` : r.message)));
    } else {
      const [message, hint] = errorText(error);
      showVerdict('error', `✗ The photo could not be checked: ${message}`, [], hint);
    }
    verdict.dataset.verdict = 'unusable';
  }
});

// ---------------------------------------------------------------- submitting and following a job

const formStatus = $('form-status');
const progressSection = $('progress-section');
const progressBar = $('progress');
const stagesList = $('stages');
let following; // { jobId, controller }

$('job-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('text').value.trim();
  if (!text) {
    say(formStatus, 'error', 'Type the text to speak first.');
    $('text').focus();
    return;
  }
  if (!avatar) {
    say(formStatus, 'error', photoInput.files?.length ? 'This photo cannot be used.' : 'Choose a portrait photo first.', 'The check under the photo says why.');
    photoInput.focus();
    return;
  }
  const quality = document.querySelector('input[name="quality"]:checked')?.value ?? 'medium';
  const headMotion = document.querySelector('input[name="head-motion"]:checked')?.value ?? 'subtle';
  const blinkRate = Number($('blink-rate').value);
  const captions = document.querySelector('input[name="captions"]:checked')?.value ?? 'soft';
  // published as HLS while it is made, so the video plays before the job is done
  const params = { text, avatarImagePath: avatar.imagePath, live: true, config: { videoQuality: quality, headMotion, blinkRate, captions } };
  const submit = $('submit');
  submit.disabled = true;
  say(formStatus, 'busy', 'Sending…');
  try {
    const voiceProfileId = await chosenProfile();
    if (voiceProfileId) params.voiceProfileId = voiceProfileId;
    const job = await api.post('/v1/jobs', { jobType: 'full_pipeline', params });
    say(formStatus, 'ok', `Queued as ${job.jobId}.`);
    void loadJobs();
    void follow(job);
  } catch (error) {
    say(formStatus, 'error', ...errorText(error));
  } finally {
    submit.disabled = false;
  }
});

function renderStages(jobType, current, finished) {
  const planned = jobType === 'full_pipeline' ? [...FULL_PIPELINE_STAGES] : [];
  const seen = stagesList.dataset.seen ? stagesList.dataset.seen.split(',') : [];
  if (current && !seen.includes(current)) seen.push(current);
  stagesList.dataset.seen = seen.join(',');
  // stages not in the plan (another job type, a newer server) go after the one seen before them
  const order = [...planned];
  let after = -1;
  for (const stage of seen) {
    const i = order.indexOf(stage);
    if (i >= 0) after = i;
    else order.splice(++after, 0, stage);
  }
  const at = current ? order.indexOf(current) : -1;
  // stages run side by side: the job names the furthest running one, and names an earlier one again
  // once a later one is over (the speech still made after the face is found): what was reached stays done
  const reached = Math.max(at, ...seen.map((stage) => order.indexOf(stage)));
  stagesList.replaceChildren(...order.map((stage, i) => {
    const done = finished === 'completed' || (i <= reached && i !== at);
    const now = !finished && i === at;
    const state = done ? 'done' : now ? 'current' : 'todo';
    const mark = done ? '✓' : now ? '…' : '';
    return el('li', { class: state, 'aria-current': now ? 'step' : undefined },
      el('span', { class: 'mark', 'aria-hidden': 'true' }, mark), stageLabel(stage),
      done ? el('span', { class: 'visually-hidden' }, ' (done)') : null);
  }));
}

function showProgress(job) {
  const pct = Math.round(Math.min(1, Math.max(0, job.progress ?? 0)) * 100);
  progressBar.value = pct;
  progressBar.textContent = `${pct}%`;
  $('progress-pct').textContent = `${pct}%`;
  progressSection.dataset.status = job.status;
}

async function follow(job) {
  following?.controller.abort();
  stopLiveOf?.();
  const controller = new AbortController();
  following = { jobId: job.jobId, controller };
  progressSection.hidden = false;
  $('result-section').hidden = true;
  $('progress-job').textContent = `Job ${job.jobId}`;
  $('cancel').hidden = false;
  stagesList.dataset.seen = '';
  const text = $('progress-text');
  let stage = job.stage ?? null;
  // the live video, from the first encoded second until the finished file takes over
  let stopLive;
  const startLive = () => {
    stopLive = playLive(video, job.jobId, {
      onPlaying: (player) => {
        if (following?.controller !== controller) return;
        $('result-section').dataset.live = 'playing';
        $('result-section').dataset.livePlayer = player;
      },
    });
    stopLiveOf = stopLive;
    resetResultSection();
    $('result-h').textContent = 'Your video, as it is made';
    $('result-section').dataset.live = 'waiting';
    $('result-section').dataset.jobId = job.jobId;
    $('result-section').hidden = false;
  };
  const announce = (message) => {
    if (text.textContent !== message) text.textContent = message;
  };
  const update = (value) => {
    showProgress(value);
    if (value.stage && value.stage !== stage) stage = value.stage;
    if (value.status === 'running' && job.params?.live === true && LIVE_STAGES.has(stage) && !stopLive) startLive();
    renderStages(job.jobType, stage, FINISHED.has(value.status) ? value.status : null);
    if (value.status === 'pending') announce('Waiting for a worker…');
    else if (value.status === 'running') announce(stage ? `${stageLabel(stage)}…` : 'Starting…');
  };
  update(job);
  $('progress-h').focus();

  let final = null;
  try {
    for (let attempt = 0; final === null; attempt++) {
      final = await streamEvents(`/v1/jobs/${encodeURIComponent(job.jobId)}/events`, (name, data) => {
        if (name === 'state' || name === 'progress' || name === 'end') update({ ...job, ...data });
        else if (name === 'stage' && data.stage) update({ ...job, status: 'running', progress: Number(progressBar.value) / 100, stage: data.stage });
      }, { signal: controller.signal });
      if (final === null) {
        // the stream broke off early: the job may have ended meanwhile, or the server restarted
        const now = await api.get(`/v1/jobs/${encodeURIComponent(job.jobId)}`, { signal: controller.signal }).catch(() => null);
        if (now && FINISHED.has(now.status)) final = now;
        else if (attempt >= 5) throw new Error('The progress stream keeps breaking off.');
        else await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  } catch (error) {
    if (error?.name === 'AbortError') return;
    const [message, hint] = errorText(error);
    say(text, 'error', `Lost track of the job: ${message}`, hint || 'It may still be running: see the list of recent jobs.');
    return;
  }
  if (following?.controller !== controller) return;
  following = undefined;
  $('cancel').hidden = true;
  update(final);
  void loadJobs();
  if (final.status === 'completed') {
    announce('Done: the video is ready.');
    await showResult(final);
  } else {
    // no video after all: the live player goes with its section
    if (stopLive) {
      stopLive();
      resetResultSection();
      delete $('result-section').dataset.live;
      delete $('result-section').dataset.livePlayer;
      $('result-section').hidden = true;
    }
    if (final.status === 'failed') say(text, 'error', `The job failed: ${final.error?.message ?? 'no reason given'}`, final.error?.hint);
    else say(text, '', 'The job was cancelled.');
  }
}

$('cancel').addEventListener('click', async () => {
  if (!following) return;
  try {
    await api.delete(`/v1/jobs/${encodeURIComponent(following.jobId)}`);
    $('progress-text').textContent = 'Cancelling…';
  } catch (error) {
    say($('progress-text'), 'error', ...errorText(error));
  }
});

// ---------------------------------------------------------------- the result

const video = $('video');
const download = $('download');
let resultObjectUrl;
/** stops the live video of the job followed last, if it plays */
let stopLiveOf;

/** The result section cleared of a previous video. */
function resetResultSection() {
  if (resultObjectUrl) URL.revokeObjectURL(resultObjectUrl);
  resultObjectUrl = undefined;
  video.removeAttribute('src');
  video.load();
  download.removeAttribute('href');
  // (nothing to download until the video is whole)
  download.hidden = true;
}

let captionsObjectUrl;

/** The job's captions as a track the viewer can turn on (shown at once), when it made soft ones. */
async function showCaptions(job) {
  for (const old of video.querySelectorAll('track')) old.remove();
  if (captionsObjectUrl) URL.revokeObjectURL(captionsObjectUrl);
  captionsObjectUrl = undefined;
  const captions = job.result?.captions;
  if (!captions?.vtt || captions.mode !== 'soft') return;
  const path = `/v1/jobs/${encodeURIComponent(job.jobId)}/captions/vtt`;
  let src = path;
  if (hasApiKey()) {
    // a <track> cannot send the key either
    try {
      captionsObjectUrl = URL.createObjectURL(await fetchBlob(path));
      src = captionsObjectUrl;
    } catch {
      return;
    }
  }
  video.append(el('track', { kind: 'captions', label: 'Captions', src, default: '' }));
}

async function showResult(job) {
  const section = $('result-section');
  const path = `/v1/jobs/${encodeURIComponent(job.jobId)}/result`;
  // (the live video, if it plays, goes on until the finished file is at hand)
  const live = section.dataset.jobId === job.jobId ? section.dataset.live : undefined;
  if (!live) stopLiveOf?.();
  if (resultObjectUrl) URL.revokeObjectURL(resultObjectUrl);
  resultObjectUrl = undefined;
  const outputExt = /\.[a-z0-9]{1,5}$/i.exec(String(job.result?.outputPath ?? ''))?.[0] ?? '.mp4';
  let ext = outputExt.toLowerCase();
  if (hasApiKey()) {
    // neither <video> nor a link can send the key: fetch the file and hand them a blob
    try {
      const blob = await fetchBlob(path);
      ext = RESULT_EXTENSIONS[blob.type] ?? ext;
      resultObjectUrl = URL.createObjectURL(blob);
    } catch (error) {
      say($('progress-text'), 'error', `The result could not be fetched: ${errorText(error)[0]}`, errorText(error)[1]);
      return;
    }
  }
  const src = resultObjectUrl ?? path;
  // from the live video to the finished file, where the viewer was, playing if it played
  const resumeAt = live ? video.currentTime : 0;
  const resume = live === 'playing' && !video.paused;
  stopLiveOf?.();
  stopLiveOf = undefined;
  delete section.dataset.live;
  delete section.dataset.livePlayer;
  video.src = src;
  await showCaptions(job);
  if (resumeAt > 0) {
    video.addEventListener('loadedmetadata', () => {
      video.currentTime = Math.min(resumeAt, video.duration || resumeAt);
      if (resume) video.play().catch(() => {});
    }, { once: true });
  }
  download.href = src;
  download.hidden = false;
  download.download = `${job.jobId}${ext}`;
  $('result-h').textContent = job.jobType === 'full_pipeline' ? 'Your video' : `Result of ${job.jobId}`;
  section.hidden = false;
  section.dataset.jobId = job.jobId;
}

// ---------------------------------------------------------------- recent jobs

const jobsBody = $('jobs').tBodies[0];

function jobRow(job) {
  const created = new Date(job.createdAt);
  const actions = el('td', { class: 'actions' });
  if (job.status === 'completed') {
    actions.append(
      el('button', { type: 'button', onclick: () => void showResult(job).then(() => $('result-h').focus()) }, 'Play', el('span', { class: 'visually-hidden' }, ` ${job.jobId}`)),
      ' ',
      el('a', {
        href: `/v1/jobs/${encodeURIComponent(job.jobId)}/result`,
        download: '',
        onclick: (event) => {
          if (!hasApiKey()) return;
          event.preventDefault();
          void saveWithKey(job);
        },
      }, 'Download', el('span', { class: 'visually-hidden' }, ` ${job.jobId}`)),
    );
  } else if (!FINISHED.has(job.status)) {
    actions.append(el('button', { type: 'button', onclick: () => void follow(job) }, 'Follow', el('span', { class: 'visually-hidden' }, ` ${job.jobId}`)));
  } else if (job.error) {
    actions.append(el('span', { class: 'muted', title: job.error.hint }, job.error.message));
  }
  return el('tr', { 'data-job-id': job.jobId },
    el('td', {}, el('time', { datetime: job.createdAt }, Number.isNaN(created.getTime()) ? job.createdAt : created.toLocaleString())),
    el('td', {}, job.jobType.replaceAll('_', ' ')),
    el('td', { class: `job-status ${job.status}` }, STATUS_LABELS[job.status] ?? job.status),
    el('td', {}, job.stage && !FINISHED.has(job.status) ? `${stageLabel(job.stage)} (${Math.round((job.progress ?? 0) * 100)}%)` : ''),
    actions);
}

async function saveWithKey(job) {
  try {
    const blob = await fetchBlob(`/v1/jobs/${encodeURIComponent(job.jobId)}/result`);
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: `${job.jobId}${RESULT_EXTENSIONS[blob.type] ?? ''}`, class: 'visually-hidden' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    say($('jobs-status'), 'error', ...errorText(error));
  }
}

async function loadJobs() {
  const status = $('jobs-status');
  try {
    const { jobs } = await api.get('/v1/jobs?limit=20');
    jobsBody.replaceChildren(...jobs.map(jobRow));
    say(status, '', jobs.length === 0 ? 'No jobs yet.' : '');
  } catch (error) {
    say(status, 'error', ...errorText(error));
  }
}
$('jobs-refresh').addEventListener('click', () => void loadJobs());

// ---------------------------------------------------------------- start

async function loadEverything() {
  await Promise.all([
    loadVoices().then(() => say($('voices-status'), '', ''), (error) => say($('voices-status'), 'error', `Saved voices could not be listed: ${errorText(error)[0]}`)),
    loadJobs(),
  ]);
}

showKeyState();
if (getApiKey()) say($('key-status'), 'ok', 'Using the key given earlier in this tab.');
void loadEverything().finally(() => document.documentElement.setAttribute('data-ready', 'true'));
