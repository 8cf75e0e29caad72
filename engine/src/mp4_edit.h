// In-place edits of a finished MP4's index (moov), for what GStreamer 1.22's mp4mux does not
// write itself.
#pragma once

#include <cstdint>
#include <filesystem>

namespace gemstream::mp4 {

// The number of samples libavcodec's AAC encoder (avenc_aac) puts before the first input
// sample: its priming, 1024 in FFmpeg 5.1. 0 if the encoder cannot be opened.
std::uint32_t aac_encoder_delay(int sample_rate, int channels);

// Makes the sound track of the MP4 at `path` start `priming` samples into its media, as an
// encoder's priming (encoder delay) asks: the first edit of its edit list (edts/elst) starts
// that much later and is that much shorter, and the track (tkhd) and movie (mvhd) durations
// follow. Players then neither play the priming as silence at the start nor run the audio
// past the video by as much; a looping player hears no gap. mp4mux writes the edit list
// without it. Returns false, leaving the file as it was, when there is no sound track with an
// edit list to change; throws Error(Io) when the file cannot be read or written.
bool skip_audio_priming(const std::filesystem::path &path, std::uint32_t priming);

} // namespace gemstream::mp4
