// WS /api/v1/live-session: one Gemini Live conversation per WebSocket, for browsers and kiosks.
//
// Connect with the subprotocols ["gemstream.v1", "bearer.TOKEN"] (or ?token=TOKEN) and choose
// the audio encodings in the query:
//   input=opus|pcm   (default opus) binary messages from the client are
//                    opus: one raw Opus packet each (as WebCodecs' AudioEncoder emits them, no
//                          Ogg or WebM framing), any Opus sample rate, mono or stereo;
//                    pcm:  S16LE mono at `rate` Hz (8000..48000, default 16000), any length.
//   output=opus|pcm  (default opus) binary messages from the server are
//                    opus: one raw Opus packet each, 24 kHz mono, 20 ms per packet;
//                    pcm:  S16LE mono 24 kHz.
//   voice=NAME       a prebuilt voice ("Puck"); default: the service's.
//
// Client -> server text messages (JSON objects):
//   {"type":"text","text":"..."}                       a typed user turn
//   {"type":"video_frame","mimeType":"image/jpeg","data":"<base64>"}
//                                                      a webcam frame; about one per second
//   {"type":"audio_end"}                               the microphone paused: end the turn
//   {"type":"ping"}                                    answered with {"type":"pong"}
//
// Server -> client text messages:
//   {"type":"ready","sessionId":"...","input":{...},"output":{"encoding":"opus",
//    "sampleRate":24000,"channels":1,"frameDurationMs":20}}    the model listens. Audio sent
//        before it is kept and delivered. sessionId is empty unless the service names its
//        sessions (the Gemini Developer API's setupComplete carries no id).
//   {"type":"transcript","role":"user"|"model","text":"...","finished":false}
//        text is the next piece of the turn's transcript, to be appended to what came before;
//        finished:true ends that role's transcript of the turn.
//   {"type":"interrupted"}      the user barged in: stop playing and drop the queued audio
//   {"type":"turn_complete"}    the model finished its turn
//   {"type":"capability","event":"consent-requested|started|progress|finished|failed",
//    "capability":"generate_card_image","message":"...","jobId":"...","url":"...","urls":{...}}
//        url: the card image made; urls: a finished video job's files (clip, loopMp4,
//        loopWebm, poster), as in the notifications
//        a tool the model called (card image, background video, search); a background video is
//        a job of the gateway's durable queue: its end is announced on /api/v1/notifications
//        and told to the model, which tells the user
//   {"type":"grounding","sources":[{"title":"...","uri":"..."}]}  search results the model used
//   {"type":"state","state":"reconnecting"|"ready"}   the upstream session is being resumed
//   {"type":"error","reason":"...","message":"..."}   then the server closes the socket
//
// Close codes: 1000 normal; 1003 an unusable message (bad JSON, a binary message the input
// encoding cannot decode repeatedly); 1008 bad parameters, or the user's daily budget is spent
// (reason budget_exceeded; checked before the conversation starts and after each model turn);
// 1011 the Gemini session failed; 1013 too many live sessions (the gateway's or the user's
// limit): retry later.
//
// Threading: WsEndpoint callbacks run on the server's service thread and only decode, queue and
// post; each conversation's LiveSession runs its own network thread, whose callbacks encode and
// post to the socket; closing a LiveSession (which waits for the service) and budget checks
// (which read the ledger and the job store) happen on the endpoint's worker thread.
#pragma once

#include "http_server.h"

#include "gemstream/capabilities.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/genai.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace gemstream::gateway {

struct LiveEndpointOptions {
  Endpoint endpoint;
  ClientOptions client;
  const MediaConfig *media = nullptr;
  std::shared_ptr<CostLedger> ledger;
  std::filesystem::path media_dir; // card images go to MEDIA/covers/USER/
  std::string model;               // empty: kDefaultLiveModel
  std::string system_instruction;
  std::size_t max_sessions = 32;
  std::size_t max_sessions_per_user = 4;
  // A confirmed background video from a conversation: enqueue it on the durable queue as the
  // REST route does and return the job id. Throws gemstream::Error when it cannot
  // (budget, too many jobs); the model is told why.
  std::function<std::string(const std::string &user, const std::string &description,
                            const std::string &mood)>
      enqueue_video;
  // Throws Error(BudgetExceeded) when `user` cannot spend `nanos` more today (the gateway's
  // budget, counting the estimates of unfinished jobs); `what` names the spending in the message.
  // Called on the endpoint's worker: before a conversation may start (for a minute of it) and
  // after each of its usage reports (for what it has cost so far, not yet in the ledger).
  std::function<void(const std::string &user, std::int64_t nanos, const std::string &what)>
      check_budget;
  std::function<void(const std::string &)> log;
};

class LiveEndpoint final : public WsEndpoint {
public:
  LiveEndpoint(Server &server, LiveEndpointOptions options);
  ~LiveEndpoint() override; // closes every conversation
  LiveEndpoint(const LiveEndpoint &) = delete;
  LiveEndpoint &operator=(const LiveEndpoint &) = delete;

  // A video job of `user` ended (a notification event): the conversation that asked for it, if
  // still open, tells the model so it can tell the user. Any thread.
  void job_event(const std::string &user, const nlohmann::json &event);
  // Closes every conversation and waits until they are closed (the Live sessions ended and
  // their costs recorded). Call it before Server::stop(). New conversations may open afterwards.
  void close_all();
  std::size_t active() const;

  void on_open(const WsSession &session) override;
  void on_message(const WsSession &session, std::string_view data, bool binary) override;
  void on_close(const WsSession &session) override;

  struct Conversation;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::gateway
