// The microphone tap of the kiosk page, on the audio rendering thread. It only slices and
// converts samples and posts them to the page; encoding and the network stay on the main thread.
//
// processorOptions:
//   mode: 'float'  20 ms blocks of Float32 samples at the context's rate (for AudioEncoder)
//         'pcm16'  20 ms blocks of S16LE mono at targetRate (the input=pcm fallback)
//   targetRate: the pcm16 output rate, at most the context's
class GemstreamMicProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.mode = opts.mode === 'pcm16' ? 'pcm16' : 'float';
    this.outRate = this.mode === 'pcm16' ? Math.min(opts.targetRate || 16000, sampleRate) : sampleRate;
    this.block = Math.round(this.outRate / 50);
    this.out = this.mode === 'pcm16' ? new Int16Array(this.block) : new Float32Array(this.block);
    this.filled = 0;
    // Downsampling: each output sample is the mean of the input samples of its interval, a box
    // filter that keeps speech intelligible without aliasing the sibilants badly.
    this.step = sampleRate / this.outRate;
    this.acc = 0;
    this.count = 0;
    this.pos = 0;
  }

  emit(value) {
    if (this.mode === 'pcm16') {
      const v = Math.max(-1, Math.min(1, value));
      this.out[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    } else {
      this.out[this.filled++] = value;
    }
    if (this.filled === this.block) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = this.mode === 'pcm16' ? new Int16Array(this.block) : new Float32Array(this.block);
      this.filled = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      s /= channels;
      if (this.step === 1) {
        this.emit(s);
        continue;
      }
      this.acc += s;
      this.count++;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        this.emit(this.acc / this.count);
        this.acc = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor('gemstream-mic', GemstreamMicProcessor);
