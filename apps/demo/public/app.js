// The demo page: camera or video file in, transformed frames out, through `streamdiffusion serve`'s
// WebSocket (protocol 1, see packages/cli/src/server.ts). The controls are generated from the JSON
// Schema of the pipeline's hot parameters the server sends in its greeting, and every change goes
// to the running pipeline through the updater.

const $ = (id) => document.getElementById(id);
const video = $('input');
const output = $('output');
const form = $('controls');
const message = $('message');

const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/stream`);
socket.binaryType = 'blob';

/** What the page knows: the output size, the parameters in force, frames in flight. */
const state = { ready: false, width: 512, height: 512, parameters: {}, inFlight: 0, sentAt: [], frames: 0, lastUrl: undefined };
/** Exposed for tests and the curious: the last messages and counters. */
window.demo = { state, updates: [], errors: [] };

const canvas = document.createElement('canvas');
const context = canvas.getContext('2d');

function setStatus(text, stateName) {
  $('status').textContent = text;
  $('status').dataset.state = stateName;
}

/** Sends the current video frame (scaled and cropped to the pipeline's size) once greeted, when none is in flight. */
function sendFrame() {
  if (!state.ready || socket.readyState !== WebSocket.OPEN || state.inFlight > 0 || video.readyState < 2 || video.videoWidth === 0) return;
  canvas.width = state.width;
  canvas.height = state.height;
  const scale = Math.max(state.width / video.videoWidth, state.height / video.videoHeight);
  const w = video.videoWidth * scale;
  const h = video.videoHeight * scale;
  context.drawImage(video, (state.width - w) / 2, (state.height - h) / 2, w, h);
  state.inFlight += 1;
  canvas.toBlob(
    (blob) => {
      if (blob === null || socket.readyState !== WebSocket.OPEN) {
        state.inFlight = 0;
        return;
      }
      state.sentAt.push(performance.now());
      socket.send(blob);
    },
    'image/jpeg',
    0.85,
  );
}
setInterval(sendFrame, 100);

/** One control per hot parameter the schema describes plainly (text, number, choice, switch, index list). */
function controlFor(key, property) {
  const value = state.parameters[key];
  const id = `control-${key}`;
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = key;
  let input;
  let read;
  const type = Array.isArray(property.type) ? property.type[0] : property.type;
  if (Array.isArray(property.enum)) {
    input = document.createElement('select');
    for (const option of property.enum) input.add(new Option(String(option), String(option)));
    input.value = String(value);
    read = () => input.value;
  } else if (type === 'boolean') {
    input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = value === true;
    read = () => input.checked;
  } else if (type === 'number' || type === 'integer') {
    input = document.createElement('input');
    input.type = 'number';
    if (property.minimum !== undefined) input.min = String(property.minimum);
    if (property.maximum !== undefined) input.max = String(property.maximum);
    input.step = type === 'integer' ? '1' : 'any';
    input.value = String(value);
    read = () => Number(input.value);
  } else if (type === 'string') {
    input = document.createElement('input');
    input.type = 'text';
    input.value = value ?? '';
    read = () => input.value;
  } else if (type === 'array' && (property.items?.type === 'integer' || property.items?.type === 'number')) {
    input = document.createElement('input');
    input.type = 'text';
    input.value = Array.isArray(value) ? value.join(',') : '';
    read = () => input.value.split(',').map((part) => Number(part.trim()));
  } else {
    return [];
  }
  input.id = id;
  input.name = key;
  input.title = property.description ?? key;
  input.addEventListener('change', () => update({ [key]: read() }));
  return [label, input];
}

/** Controls of the wrappers' lists: each ControlNet's scale, the IP-Adapter's style image and scale. */
function wrapperControls() {
  const made = [];
  const controlnets = state.parameters.controlnets;
  if (Array.isArray(controlnets)) {
    controlnets.forEach((entry, index) => {
      const label = document.createElement('label');
      label.textContent = `controlnet ${index} scale`;
      const input = document.createElement('input');
      Object.assign(input, { type: 'range', min: '0', max: '2', step: '0.05', value: String(entry.conditioning_scale), name: `controlnet-${index}-scale` });
      input.addEventListener('change', () => update({ controlnets: state.parameters.controlnets.map((item, at) => (at === index ? { ...item, conditioning_scale: Number(input.value) } : item)) }));
      made.push(label, input);
    });
  }
  const ipadapters = state.parameters.ipadapters;
  if (Array.isArray(ipadapters) && ipadapters.length === 1) {
    const entry = () => state.parameters.ipadapters[0];
    const scaleLabel = document.createElement('label');
    scaleLabel.textContent = 'style scale';
    const scale = document.createElement('input');
    Object.assign(scale, { type: 'range', min: '0', max: '2', step: '0.05', value: String(entry().scale), name: 'ip-adapter-scale' });
    scale.addEventListener('change', () => update({ ipadapters: [{ ...entry(), scale: Number(scale.value) }] }));
    const imageLabel = document.createElement('label');
    imageLabel.textContent = 'style image';
    const image = document.createElement('input');
    Object.assign(image, { type: 'file', accept: 'image/*', name: 'ip-adapter-style' });
    image.addEventListener('change', () => {
      const file = image.files?.[0];
      if (file === undefined) return;
      const reader = new FileReader();
      reader.onload = () => update({ ipadapters: [{ ...entry(), style_image: reader.result, style_images: undefined }] });
      reader.readAsDataURL(file);
    });
    made.push(scaleLabel, scale, imageLabel, image);
  }
  return made;
}

function buildControls(controls) {
  form.replaceChildren();
  for (const [key, property] of Object.entries(controls.properties ?? {})) form.append(...controlFor(key, property));
  form.append(...wrapperControls());
}

function update(parameters) {
  socket.send(JSON.stringify({ type: 'update', parameters }));
}

socket.addEventListener('open', () => setStatus('connected', 'open'));
socket.addEventListener('close', () => setStatus('disconnected', 'closed'));
socket.addEventListener('message', (event) => {
  if (typeof event.data !== 'string') {
    const url = URL.createObjectURL(event.data);
    output.src = url;
    if (state.lastUrl !== undefined) URL.revokeObjectURL(state.lastUrl);
    state.lastUrl = url;
    state.frames += 1;
    state.inFlight = 0;
    const sent = state.sentAt.shift();
    if (sent !== undefined) $('latency').textContent = `${(performance.now() - sent).toFixed(0)} ms`;
    $('frames').textContent = `${state.frames} frames`;
    sendFrame();
    return;
  }
  const data = JSON.parse(event.data);
  if (data.type === 'hello') {
    Object.assign(state, { ready: true, width: data.width, height: data.height, parameters: data.parameters });
    buildControls(data.controls);
    setStatus(`connected — ${data.width}×${data.height}`, 'open');
  } else if (data.type === 'frame') {
    $('fps').textContent = `${data.fps.toFixed(1)} fps`;
    // Frames the server dropped as newer ones arrived are not coming back.
    state.sentAt.splice(0, Math.max(0, state.sentAt.length - 1));
  } else if (data.type === 'updated') {
    state.parameters = data.parameters;
    window.demo.updates.push(data);
    message.textContent = data.applied.length > 0 ? `applied: ${data.applied.join(', ')}` : data.needsReload.length > 0 ? `needs a restart: ${data.needsReload.join(', ')}` : '';
  } else if (data.type === 'error') {
    // A failed frame sends no image: free the slot so the next frame goes.
    if (data.frame !== undefined) {
      state.inFlight = 0;
      state.sentAt.shift();
    }
    window.demo.errors.push(data.message);
    message.textContent = data.message;
  }
});

async function useCamera() {
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    await video.play();
  } catch (error) {
    message.textContent = `no camera (${error.message}): choose a video file`;
  }
}
$('camera').addEventListener('click', useCamera);
$('file').addEventListener('change', () => {
  const file = $('file').files?.[0];
  if (file === undefined) return;
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  void video.play();
});
void useCamera();
