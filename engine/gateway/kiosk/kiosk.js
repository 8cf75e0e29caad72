// The gemstream kiosk page: a voice conversation with a Gemini Live model through the gateway's
// /api/v1/live-session WebSocket (live_endpoint.h), the webcam as the model's eyes, and a
// background video that follows the user's finished video jobs (/api/v1/notifications).
//
// The page holds no secret: the bearer token comes from the URL fragment (#token=..., never sent
// to the server), lives in sessionStorage for this tab only, and goes to the gateway in the
// Authorization header (REST) or as the "bearer.TOKEN" WebSocket subprotocol.
//
// window.gemstreamKiosk is the page's state for operators and tests; <body data-state> mirrors
// its `state`: token | idle | connecting | ready | listening | reconnecting.

const TOKEN_KEY = 'gemstream.token';
const OPUS_FRAME_US = 20000;
const ENCODER_CONFIG = {
  codec: 'opus',
  sampleRate: 48000,
  numberOfChannels: 1,
  bitrate: 32000,
  opus: { frameDuration: OPUS_FRAME_US },
};
const DECODER_CONFIG = { codec: 'opus', sampleRate: 24000, numberOfChannels: 1 };
const PCM_INPUT_RATE = 16000;
const PCM_OUTPUT_RATE = 24000;
// Audio sent while the socket connects is kept (the server delivers it once the model
// listens); beyond 10 s of it the oldest is dropped.
const MAX_PENDING_MESSAGES = 500;
// Above this much unsent data the network is not keeping up: microphone packets are dropped
// rather than queued, so the conversation stays live instead of falling behind.
const MAX_BUFFERED_BYTES = 256 * 1024;
// Well under the gateway's message limit for the live session (1 MiB); a larger frame is
// re-encoded smaller.
const MAX_FRAME_MESSAGE_BYTES = 512 * 1024;
const FRAME_INTERVAL_MS = 1000;
const FRAME_MAX_WIDTH = 640;
const KEEPALIVE_MS = 25000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// Model audio starts this far ahead of "now" after a gap, a small jitter buffer.
const PLAYBACK_LEAD_S = 0.06;
// A kiosk runs for days: the transcript, notes and errors keep only their latest entries.
const MAX_LINES = 200;

const kiosk = {
  state: 'loading',
  input: '',
  output: '',
  sessionId: '',
  audioPacketsSent: 0,
  audioPacketsDropped: 0,
  audioPacketsReceived: 0,
  samplesDecoded: 0, // at the decoder's output rate (browsers decode Opus at 48 kHz)
  samplesPlayed: 0,
  secondsDecoded: 0,
  secondsPlayed: 0,
  speaking: false,
  videoFramesSent: 0,
  transcript: [],
  notes: [],
  backgroundUrl: '',
  notifications: 'closed',
  errors: [],
};
window.gemstreamKiosk = kiosk;

const ui = {
  form: document.getElementById('token-form'),
  tokenInput: document.getElementById('token-input'),
  tokenError: document.getElementById('token-error'),
  kiosk: document.getElementById('kiosk'),
  transcript: document.getElementById('transcript'),
  voice: document.getElementById('voice'),
  voiceLabel: document.querySelector('#voice .label'),
  camera: document.getElementById('camera'),
  status: document.getElementById('status'),
  errors: document.getElementById('errors'),
  preview: document.getElementById('preview'),
  backgrounds: [document.getElementById('background-a'), document.getElementById('background-b')],
};

let token = '';
let codecs = null; // Promise<{input, output}>
let audioContext = null;
let live = null; // the live-session socket and its state
let mic = null;
let camera = null;
let voiceBusy = false;

// ---- state and messages ------------------------------------------------------------------

function refreshState() {
  let state;
  if (!token) state = 'token';
  else if (!live) state = 'idle';
  else if (!live.ready) state = 'connecting';
  else if (live.reconnecting) state = 'reconnecting';
  else state = mic ? 'listening' : 'ready';
  kiosk.state = state;
  document.body.dataset.state = state;
  const on = mic !== null;
  ui.voice.setAttribute('aria-pressed', String(on));
  ui.voiceLabel.textContent = on ? 'Stop' : 'Talk';
  const status = {
    idle: '',
    connecting: 'Connecting…',
    ready: 'Press Talk to speak.',
    listening: 'Listening…',
    reconnecting: 'Reconnecting…',
  }[state];
  if (status !== undefined) ui.status.textContent = status;
}

function pushCapped(list, item) {
  list.push(item);
  if (list.length > MAX_LINES) list.splice(0, list.length - MAX_LINES);
}

function appendLine(li) {
  ui.transcript.append(li);
  while (ui.transcript.children.length > MAX_LINES) ui.transcript.firstElementChild.remove();
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function reportError(message) {
  pushCapped(kiosk.errors, message);
  const li = document.createElement('li');
  li.textContent = message;
  ui.errors.append(li);
  while (ui.errors.children.length > 3) ui.errors.firstElementChild.remove();
  console.error('gemstream kiosk:', message);
}

function mediaErrorText(what, error) {
  switch (error && error.name) {
    case 'NotAllowedError':
      return `Access to the ${what} was denied. Allow it in the browser's site settings.`;
    case 'NotFoundError':
      return `No ${what} was found. Connect one and try again.`;
    case 'NotReadableError':
      return `The ${what} is in use by another program.`;
    default:
      return `The ${what} could not be started: ${error && error.message ? error.message : error}`;
  }
}

// ---- transcript --------------------------------------------------------------------------

const openLines = { user: null, model: null }; // {entry, li} of the turn's line, per role

function appendTranscript(role, text, finished) {
  if (role !== 'user' && role !== 'model') return;
  if (openLines[role] === null && text) {
    const entry = { role, text: '' };
    pushCapped(kiosk.transcript, entry);
    const li = document.createElement('li');
    li.className = role;
    appendLine(li);
    openLines[role] = { entry, li };
  }
  const line = openLines[role];
  if (line) {
    line.entry.text += text || '';
    line.li.textContent = line.entry.text;
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }
  if (finished) openLines[role] = null;
}

function closeLines() {
  openLines.user = null;
  openLines.model = null;
}

function addNote(text, imageUrl) {
  if (!text) return;
  pushCapped(kiosk.notes, text);
  const li = document.createElement('li');
  li.className = 'note';
  li.textContent = text;
  if (imageUrl) {
    const img = document.createElement('img');
    img.src = imageUrl;
    img.alt = '';
    img.className = 'note-image';
    li.append(document.createElement('br'), img);
  }
  appendLine(li);
}

function capabilityText(msg) {
  if (msg.message) return msg.message;
  const name = msg.capability || '';
  const thing = /video|background/.test(name) ? 'your background' : /image|card/.test(name) ? 'your image' : '';
  switch (String(msg.event || '').replace(/_/g, '-')) {
    case 'consent-requested': return 'Waiting for your OK…';
    case 'started': return thing ? `Creating ${thing}…` : 'Working on it…';
    case 'progress': return 'Still working…';
    case 'finished': return thing ? `${thing[0].toUpperCase()}${thing.slice(1)} is ready.` : 'Done.';
    case 'failed': return 'That did not work.';
    default: return '';
  }
}

// ---- gateway URLs ------------------------------------------------------------------------

// The gateway's root, relative to this page (/kiosk/), so a path prefix added by a reverse
// proxy is kept.
function apiUrl(path) {
  return new URL(`../${path}`, location.href);
}

function openSocket(path, query) {
  const url = apiUrl(path);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (query) url.search = query.toString();
  const socket = new WebSocket(url.href, ['gemstream.v1', `bearer.${token}`]);
  socket.binaryType = 'arraybuffer';
  return socket;
}

// ---- codecs ------------------------------------------------------------------------------

async function chooseCodecs() {
  const supported = async (Codec, config) => {
    if (typeof Codec === 'undefined') return false;
    try {
      return (await Codec.isConfigSupported(config)).supported === true;
    } catch {
      return false;
    }
  };
  const [encoder, decoder] = await Promise.all([
    supported(window.AudioEncoder, ENCODER_CONFIG),
    supported(window.AudioDecoder, DECODER_CONFIG),
  ]);
  kiosk.input = encoder ? 'opus' : 'pcm';
  kiosk.output = decoder ? 'opus' : 'pcm';
  return { input: kiosk.input, output: kiosk.output };
}

async function ensureAudioContext() {
  if (!audioContext) {
    try {
      // 48 kHz: what the Opus encoder takes without resampling.
      audioContext = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
    } catch {
      audioContext = new AudioContext({ latencyHint: 'interactive' });
    }
    // A served file, not a blob: the page's CSP allows scripts from this origin only.
    await audioContext.audioWorklet.addModule('mic-worklet.js');
  }
  if (audioContext.state === 'suspended') await audioContext.resume();
  return audioContext;
}

// ---- the live session --------------------------------------------------------------------

function ensureLive(chosen) {
  if (live) return live;
  const query = new URLSearchParams({ input: chosen.input, output: chosen.output });
  if (chosen.input === 'pcm') query.set('rate', String(PCM_INPUT_RATE));
  const session = {
    socket: openSocket('api/v1/live-session', query),
    pending: [],
    ready: false,
    reconnecting: false,
    failed: false,
    keepalive: 0,
  };
  live = session;
  const { socket } = session;
  socket.onopen = () => {
    for (const message of session.pending) socket.send(message);
    session.pending = [];
    session.keepalive = setInterval(() => send(session, JSON.stringify({ type: 'ping' })), KEEPALIVE_MS);
  };
  socket.onmessage = (event) => {
    if (live !== session) return;
    if (typeof event.data === 'string') onLiveText(session, event.data);
    else onModelAudio(event.data);
  };
  socket.onclose = (event) => onLiveClose(session, event);
  refreshState();
  return session;
}

function send(session, message) {
  const { socket } = session;
  if (socket.readyState === WebSocket.OPEN) {
    socket.send(message);
    return true;
  }
  if (socket.readyState === WebSocket.CONNECTING) {
    if (session.pending.length >= MAX_PENDING_MESSAGES) session.pending.shift();
    session.pending.push(message);
    return true;
  }
  return false;
}

function sendAudio(bytes) {
  if (!live) return;
  if (live.socket.bufferedAmount > MAX_BUFFERED_BYTES) {
    kiosk.audioPacketsDropped++;
    return;
  }
  if (send(live, bytes)) kiosk.audioPacketsSent++;
}

function onLiveText(session, text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    reportError('The gateway sent a message this page cannot read.');
    return;
  }
  switch (msg.type) {
    case 'ready':
      session.ready = true;
      session.reconnecting = false;
      kiosk.sessionId = msg.sessionId || '';
      break;
    case 'transcript':
      appendTranscript(msg.role, msg.text, msg.finished === true);
      break;
    case 'interrupted':
      stopPlayback();
      openLines.model = null;
      break;
    case 'turn_complete':
      closeLines();
      break;
    case 'capability': {
      const finished = msg.event === 'finished';
      addNote(capabilityText(msg), finished && /\.(png|jpe?g|webp)$/i.test(msg.url || '') ? msg.url : '');
      // A finished background video: the same event also comes on the notifications socket,
      // which may be reconnecting right now.
      if (finished && msg.urls) showBackground(backgroundUrlOf(msg.urls));
      break;
    }
    case 'grounding': {
      const titles = (msg.sources || []).map((s) => s.title || s.uri).filter(Boolean);
      if (titles.length) addNote(`Sources: ${titles.join(', ')}`);
      break;
    }
    case 'state':
      session.reconnecting = msg.state === 'reconnecting';
      break;
    case 'error':
      session.failed = true;
      reportError(msg.message || `The conversation failed (${msg.reason || 'unknown reason'}).`);
      break;
    default:
      break; // pong, and types newer than this page
  }
  refreshState();
}

function closeText(event) {
  const why = event.reason ? ` (${event.reason})` : '';
  switch (event.code) {
    case 1003: return `The gateway could not use what this page sent${why}.`;
    case 1008: return `The conversation went over a limit${why}.`;
    case 1009: return 'The gateway refused a message that was too large.';
    case 1011: return `The assistant's service failed${why}. Press Talk to start again.`;
    case 1013: return 'The assistant is busy with too many conversations. Try again in a moment.';
    default: return `The connection to the assistant was lost (code ${event.code})${why}. Press Talk to reconnect.`;
  }
}

async function onLiveClose(session, event) {
  clearInterval(session.keepalive);
  if (live !== session) return;
  live = null;
  closeLines();
  if (event.code !== 1000 && !session.failed) reportError(closeText(event));
  await stopMic();
  refreshState();
}

// ---- microphone --------------------------------------------------------------------------

async function startMic(ctx, chosen) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  const opus = chosen.input === 'opus';
  const node = new AudioWorkletNode(ctx, 'gemstream-mic', {
    numberOfInputs: 1,
    numberOfOutputs: 0, // pulled by the graph without reaching the speakers
    channelCount: 1,
    channelCountMode: 'explicit',
    processorOptions: { mode: opus ? 'float' : 'pcm16', targetRate: PCM_INPUT_RATE },
  });
  const source = ctx.createMediaStreamSource(stream);
  let encoder = null;
  if (opus) {
    encoder = new AudioEncoder({
      output: (chunk) => {
        const bytes = new Uint8Array(chunk.byteLength);
        chunk.copyTo(bytes);
        sendAudio(bytes.buffer);
      },
      error: (e) => reportError(`The audio encoder failed: ${e.message}`),
    });
    encoder.configure({ ...ENCODER_CONFIG, sampleRate: ctx.sampleRate });
  }
  let timestamp = 0;
  node.port.onmessage = (event) => {
    if (!opus) {
      sendAudio(event.data);
      return;
    }
    if (encoder.state !== 'configured') return;
    const samples = new Float32Array(event.data);
    const data = new AudioData({
      format: 'f32',
      sampleRate: ctx.sampleRate,
      numberOfFrames: samples.length,
      numberOfChannels: 1,
      timestamp,
      data: samples,
    });
    timestamp += Math.round((samples.length * 1e6) / ctx.sampleRate);
    encoder.encode(data);
    data.close();
  };
  source.connect(node);
  mic = { stream, source, node, encoder };
}

// Stops capturing; the encoder's last packets are sent before this resolves.
async function stopMic() {
  if (!mic) return;
  const { stream, source, node, encoder } = mic;
  mic = null;
  source.disconnect();
  node.port.onmessage = null;
  for (const track of stream.getTracks()) track.stop();
  if (encoder && encoder.state === 'configured') {
    try {
      await encoder.flush();
    } catch {
      // A failed flush loses at most the last 20 ms.
    }
  }
  if (encoder && encoder.state !== 'closed') encoder.close();
}

async function toggleVoice() {
  if (voiceBusy) return;
  voiceBusy = true;
  ui.voice.disabled = true;
  try {
    if (mic) {
      await stopMic();
      if (live) send(live, JSON.stringify({ type: 'audio_end' }));
    } else {
      // Created inside the click: browsers only let a page start audio after a gesture.
      const ctx = await ensureAudioContext();
      const chosen = await codecs;
      ensureLive(chosen);
      await startMic(ctx, chosen);
    }
  } catch (error) {
    reportError(mediaErrorText('microphone', error));
    await stopMic();
  } finally {
    voiceBusy = false;
    ui.voice.disabled = false;
    refreshState();
  }
}

// ---- model audio -------------------------------------------------------------------------

const player = {
  decoder: null,
  nextTimestamp: 0, // of the next packet given to the decoder, microseconds
  dropBefore: 0, // decoded audio older than this was cut off by an interruption
  playHead: 0, // AudioContext time at which the next buffer starts
  sources: new Set(),
};

function decoder() {
  if (player.decoder && player.decoder.state !== 'closed') return player.decoder;
  player.decoder = new AudioDecoder({
    output: (data) => {
      if (data.timestamp < player.dropBefore) {
        data.close();
        return;
      }
      const samples = new Float32Array(data.numberOfFrames);
      data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
      const rate = data.sampleRate;
      data.close();
      schedule(samples, rate);
    },
    error: (e) => reportError(`The audio decoder failed: ${e.message}`),
  });
  player.decoder.configure(DECODER_CONFIG);
  return player.decoder;
}

function onModelAudio(buffer) {
  kiosk.audioPacketsReceived++;
  if (kiosk.output === 'opus') {
    const timestamp = player.nextTimestamp;
    player.nextTimestamp += OPUS_FRAME_US;
    decoder().decode(new EncodedAudioChunk({ type: 'key', timestamp, data: buffer }));
    return;
  }
  const pcm = new Int16Array(buffer, 0, buffer.byteLength >> 1);
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  schedule(samples, PCM_OUTPUT_RATE);
}

function schedule(samples, rate) {
  const ctx = audioContext;
  if (!ctx || samples.length === 0) return;
  kiosk.samplesDecoded += samples.length;
  kiosk.secondsDecoded += samples.length / rate;
  const buffer = ctx.createBuffer(1, samples.length, rate);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  const now = ctx.currentTime;
  if (player.playHead < now + 0.01) player.playHead = now + PLAYBACK_LEAD_S;
  source.start(player.playHead);
  player.playHead += buffer.duration;
  player.sources.add(source);
  source.onended = () => {
    player.sources.delete(source);
    if (!source.cancelled) {
      kiosk.samplesPlayed += samples.length;
      kiosk.secondsPlayed += buffer.duration;
    }
    setSpeaking(player.sources.size > 0);
  };
  setSpeaking(true);
}

function setSpeaking(speaking) {
  kiosk.speaking = speaking;
  document.body.dataset.speaking = String(speaking);
}

// Barge-in: everything scheduled stops at once, and what the decoder still holds is dropped.
function stopPlayback() {
  player.dropBefore = player.nextTimestamp;
  for (const source of player.sources) {
    source.cancelled = true;
    try {
      source.stop();
    } catch {
      // Not started yet in some engines; disconnecting below silences it anyway.
    }
    source.disconnect();
  }
  player.sources.clear();
  player.playHead = 0;
  setSpeaking(false);
}

// ---- webcam ------------------------------------------------------------------------------

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  if (typeof bytes.toBase64 === 'function') return bytes.toBase64();
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function jpeg(canvas, quality) {
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
}

async function sendFrame(cam) {
  if (cam.busy || !live || !live.ready || live.socket.readyState !== WebSocket.OPEN) return;
  const video = ui.preview;
  if (!video.videoWidth) return;
  cam.busy = true;
  try {
    for (const [width, quality] of [[FRAME_MAX_WIDTH, 0.7], [480, 0.5]]) {
      const scale = Math.min(1, width / video.videoWidth);
      cam.canvas.width = Math.round(video.videoWidth * scale);
      cam.canvas.height = Math.round(video.videoHeight * scale);
      cam.canvas.getContext('2d').drawImage(video, 0, 0, cam.canvas.width, cam.canvas.height);
      const blob = await jpeg(cam.canvas, quality);
      if (!blob || camera !== cam || !live) return;
      const message = JSON.stringify({
        type: 'video_frame',
        mimeType: 'image/jpeg',
        data: toBase64(await blob.arrayBuffer()),
      });
      if (message.length <= MAX_FRAME_MESSAGE_BYTES) {
        if (send(live, message)) kiosk.videoFramesSent++;
        return;
      }
    }
  } finally {
    cam.busy = false;
  }
}

async function toggleCamera() {
  if (camera) {
    clearInterval(camera.timer);
    for (const track of camera.stream.getTracks()) track.stop();
    camera = null;
    ui.preview.srcObject = null;
    ui.preview.hidden = true;
    ui.camera.setAttribute('aria-pressed', 'false');
    return;
  }
  ui.camera.disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    ui.preview.srcObject = stream;
    ui.preview.hidden = false;
    await ui.preview.play();
    const cam = { stream, canvas: document.createElement('canvas'), busy: false, timer: 0 };
    cam.timer = setInterval(() => sendFrame(cam), FRAME_INTERVAL_MS);
    camera = cam;
    ui.camera.setAttribute('aria-pressed', 'true');
  } catch (error) {
    reportError(mediaErrorText('camera', error));
  } finally {
    ui.camera.disabled = false;
  }
}

// ---- background video --------------------------------------------------------------------

const background = { active: -1, generation: 0 };

function backgroundUrlOf(urls) {
  if (!urls) return '';
  const webm = urls.loopWebm && ui.backgrounds[0].canPlayType('video/webm') !== '';
  return (webm && urls.loopWebm) || urls.loopMp4 || urls.clip || '';
}

// Crossfades to `url` once it can play; the previous video keeps playing until then.
function showBackground(url) {
  if (!url || url === kiosk.backgroundUrl) return;
  const generation = ++background.generation;
  const index = background.active === 0 ? 1 : 0;
  const next = ui.backgrounds[index];
  const previous = background.active >= 0 ? ui.backgrounds[background.active] : null;
  next.oncanplay = () => {
    next.oncanplay = null;
    if (generation !== background.generation) return;
    next.play().catch(() => {});
    next.classList.add('active');
    if (previous) previous.classList.remove('active');
    background.active = index;
    kiosk.backgroundUrl = url;
    if (previous) {
      setTimeout(() => {
        if (generation !== background.generation) return;
        previous.pause();
        previous.removeAttribute('src');
        previous.load();
      }, 1500);
    }
  };
  next.onerror = () => {
    next.onerror = null;
    if (generation === background.generation) reportError(`The background video ${url} cannot be played.`);
  };
  next.src = url;
  next.load();
}

// The newest succeeded job's video. False if the gateway refused the token.
async function loadLatestBackground() {
  let response;
  try {
    response = await fetch(apiUrl('api/v1/media/jobs?limit=20'), {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
  } catch (error) {
    reportError(`The gateway cannot be reached: ${error.message}`);
    return true;
  }
  if (response.status === 401) return false;
  if (!response.ok) {
    reportError(`Listing your videos failed (HTTP ${response.status}).`);
    return true;
  }
  const generation = background.generation;
  const { jobs = [] } = await response.json();
  // A notification that arrived meanwhile is newer than anything in the list.
  if (generation !== background.generation) return true;
  for (const job of jobs) {
    const url = job.state === 'succeeded' ? backgroundUrlOf(job.urls) : '';
    if (url) {
      showBackground(url);
      break;
    }
  }
  return true;
}

const notifications = { socket: null, delay: RECONNECT_MIN_MS, keepalive: 0 };

function connectNotifications() {
  const socket = openSocket('api/v1/notifications');
  notifications.socket = socket;
  kiosk.notifications = 'connecting';
  socket.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === 'ready') {
      kiosk.notifications = 'open';
      notifications.delay = RECONNECT_MIN_MS;
    } else if (msg.type === 'video_generation_complete') {
      showBackground(backgroundUrlOf(msg.urls));
    } else if (msg.type === 'video_generation_failed') {
      addNote(`A background video could not be made${msg.reason ? `: ${msg.reason}` : '.'}`);
    }
  };
  socket.onopen = () => {
    notifications.keepalive = setInterval(() => socket.send('{"type":"ping"}'), KEEPALIVE_MS);
  };
  socket.onclose = () => {
    clearInterval(notifications.keepalive);
    kiosk.notifications = 'closed';
    if (!token) return;
    // Jittered exponential backoff, so kiosks restarted together do not reconnect in lockstep.
    const delay = notifications.delay * (0.75 + Math.random() * 0.5);
    notifications.delay = Math.min(notifications.delay * 2, RECONNECT_MAX_MS);
    setTimeout(connectNotifications, delay);
  };
}

// ---- token and start-up ------------------------------------------------------------------

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives only as long as the page
  }
}

// The token from the fragment (then removed from the address bar and history) or this tab's
// storage.
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    storage()?.setItem(TOKEN_KEY, fromUrl);
    fragment.delete('token');
    const rest = fragment.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    return fromUrl;
  }
  return storage()?.getItem(TOKEN_KEY) || '';
}

function askForToken(message) {
  token = '';
  storage()?.removeItem(TOKEN_KEY);
  ui.kiosk.hidden = true;
  ui.form.hidden = false;
  ui.tokenError.hidden = !message;
  ui.tokenError.textContent = message || '';
  refreshState();
  ui.tokenInput.focus();
}

async function start(newToken) {
  token = newToken;
  ui.form.hidden = true;
  ui.kiosk.hidden = false;
  codecs = chooseCodecs();
  refreshState();
  ui.voice.focus();
  if (!(await loadLatestBackground())) {
    askForToken('The gateway did not accept this token. Check it and try again.');
    return;
  }
  connectNotifications();
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = ui.tokenInput.value.trim();
  if (!value) return;
  ui.tokenInput.value = '';
  storage()?.setItem(TOKEN_KEY, value);
  start(value);
});
ui.voice.addEventListener('click', toggleVoice);
ui.camera.addEventListener('click', toggleCamera);

const initial = takeToken();
if (initial) start(initial);
else askForToken('');
