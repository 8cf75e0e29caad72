#include "kiosk.h"

#include "media_files.h" // content_type_for

#include <string>

namespace gemstream::gateway {

// 'self' covers same-origin WebSockets only in browsers that implement CSP 3's scheme
// upgrade; ws:/wss: keep older kiosk browsers working. The page needs no inline script or
// style, no frames, no plugins and no form posts (the token form is handled in script).
const char kKioskContentSecurityPolicy[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "media-src 'self' blob:; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

namespace {

void add_common_headers(Response &r) {
  r.headers.emplace_back("content-security-policy", kKioskContentSecurityPolicy);
  r.headers.emplace_back("x-content-type-options", "nosniff");
  r.headers.emplace_back("referrer-policy", "no-referrer");
  // The page asks for the microphone and the camera itself; nothing it embeds may.
  r.headers.emplace_back("permissions-policy", "microphone=(self), camera=(self)");
}

Response serve_asset(const Request &req) {
  std::string name = req.params.at("*");
  if (name.empty())
    name = "index.html";
  for (const KioskAsset &asset : kiosk_assets()) {
    if (asset.name != name)
      continue;
    Response r;
    r.headers.emplace_back("etag", std::string(asset.etag));
    r.headers.emplace_back("cache-control", "no-cache");
    add_common_headers(r);
    if (const std::string match = req.header("if-none-match");
        !match.empty() && (match == asset.etag || match == "*")) {
      r.status = 304;
      return r;
    }
    r.content_type = content_type_for(std::string(asset.name));
    r.body = std::string(asset.body);
    return r;
  }
  return Response::error(404, "no such kiosk file: " + name, "not_found");
}

} // namespace

void add_kiosk_routes(Server &server) {
  Route redirect;
  redirect.method = "GET";
  redirect.pattern = "/kiosk";
  redirect.auth = Auth::Public;
  redirect.on_service_thread = true;
  redirect.handler = [](Request &) {
    // Browsers keep the fragment (#token=...) across a redirect without one.
    Response r;
    r.status = 308;
    r.headers.emplace_back("location", "/kiosk/");
    r.headers.emplace_back("cache-control", "no-cache");
    return r;
  };
  server.add_route(std::move(redirect));

  Route files;
  files.method = "GET";
  files.pattern = "/kiosk/*"; // "/kiosk/" matches with an empty remainder: the page
  files.auth = Auth::Public;
  files.on_service_thread = true;
  files.handler = [](Request &req) { return serve_asset(req); };
  server.add_route(std::move(files));
}

} // namespace gemstream::gateway
