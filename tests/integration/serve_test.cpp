// The HTTP server in-process on a free loopback port, driven by cpp-httplib's client:
// every endpoint, every error status, batching across tasks, reloads, and requests
// that must not bring it down.
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "clr/store/store.h"
#include "test_util.h"

namespace clr {
namespace {

using nlohmann::json;

constexpr int64_t kSize = 16;

class Served {
 public:
  Served(const std::string& store, serve::HttpOptions o) {
    serve::EngineOptions eo;
    eo.store_dir = store;
    engine_ = std::make_unique<serve::Engine>(eo);
    o.host = "127.0.0.1";
    o.port = 0;
    server_ = std::make_unique<serve::HttpServer>(*engine_, o);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client_->set_read_timeout(30);
    for (int i = 0; i < 100 && !client_->Get("/healthz"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ~Served() {
    server_->stop();
    thread_.join();
  }
  httplib::Client& client() { return *client_; }
  serve::Engine& engine() { return *engine_; }
  int port() const { return port_; }

 private:
  std::unique_ptr<serve::Engine> engine_;
  std::unique_ptr<serve::HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
  std::thread thread_;
  int port_ = 0;
};

std::string png_of(int64_t value, int64_t side = 20) {
  torch::manual_seed(value);
  return data::encode_png(torch::randint(0, 256, {side, side, 3}, torch::kLong).to(torch::kByte));
}

json body(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no response";
  return r ? json::parse(r->body) : json();
}

void expect_error(const httplib::Result& r, int status, const std::string& type) {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["error"]["type"], type) << r->body;
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
}

// A raw TCP connection to the server, for what an HTTP client library does not send.
int connect_raw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// Everything the server sends until it closes the connection, or until `seconds` pass.
std::string read_until_closed(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<size_t>(n));
  return got;
}

// The status codes of the responses in `raw`, in order.
std::vector<int> statuses_in(const std::string& raw) {
  std::vector<int> out;
  for (size_t p = raw.find("HTTP/1.1 "); p != std::string::npos; p = raw.find("HTTP/1.1 ", p + 1)) {
    out.push_back(std::atoi(raw.c_str() + p + 9));
  }
  return out;
}

TEST(Serve, EndpointsAnswerAndPredictionsMatchTheEngine) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 4, kSize, 21);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  Served s(ts.store, o);

  const json health = body(s.client().Get("/healthz"));
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["tasks"], 4);
  EXPECT_EQ(health["backbone"]["fingerprint"], ts.fingerprint);

  const json list = body(s.client().Get("/v1/tasks"));
  ASSERT_EQ(list["tasks"].size(), 4u);
  EXPECT_EQ(list["tasks"][1]["name"], "t1");
  EXPECT_EQ(list["tasks"][1]["classes"], 3);
  const json one = body(s.client().Get("/v1/tasks/t3"));
  EXPECT_EQ(one["class_names"], json({"c0", "c1", "c2", "c3", "c4"}));
  EXPECT_EQ(one["preprocess"]["input_size"], kSize);

  const std::string img = png_of(1);
  const auto r = s.client().Post("/v1/tasks/t3/predict?top_k=2", img, "image/png");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json p = json::parse(r->body);
  EXPECT_EQ(p["task"], "t3");
  ASSERT_EQ(p["top"].size(), 2u);
  // The same answer as the engine gives for the same bytes.
  const at::Tensor x = s.engine().preprocess("t3", data::decode_image(img, "test")).unsqueeze(0);
  const auto want = s.engine().predict({"t3"}, x, 2)[0];
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(p["top"][j]["index"], want[j].index);
    EXPECT_EQ(p["top"][j]["class"], want[j].name);
    EXPECT_NEAR(p["top"][j]["prob"].get<double>(), want[j].prob, 1e-6);
  }
  const json stats = body(s.client().Get("/v1/stats"));
  EXPECT_GE(stats["served"].get<int>(), 1);
}

TEST(Serve, ErrorsAreJsonWithTheRightStatus) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 2, kSize, 22);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.max_body_bytes = 4096;
  o.max_pixels = 1000;  // the 20 x 20 test images pass
  o.admin_token = "s3cret";
  Served s(ts.store, o);
  const std::string img = png_of(2);
  ASSERT_LT(img.size(), 4096u);
  expect_error(s.client().Post("/v1/tasks/nope/predict", img, "image/png"), 404, "not_found");
  expect_error(s.client().Get("/v1/tasks/nope"), 404, "not_found");
  expect_error(s.client().Get("/no/such/route"), 404, "not_found");
  expect_error(s.client().Get("/v1/%FF%FE"), 404, "not_found");  // not UTF-8 once decoded
  expect_error(s.client().Post("/v1/tasks/t0/predict", std::string("not an image at all"), "image/png"), 400,
               "bad_image");
  expect_error(s.client().Post("/v1/tasks/t0/predict", std::string(), "image/png"), 400, "bad_request");
  expect_error(s.client().Post("/v1/tasks/t0/predict?top_k=zero", img, "image/png"), 400, "bad_request");
  expect_error(s.client().Post("/v1/tasks/t0/predict", std::string(5000, 'x'), "image/png"), 413, "payload_too_large");
  expect_error(s.client().Post("/v1/admin/reload", "", "text/plain"), 401, "unauthorized");
  httplib::Headers auth = {{"Authorization", "Bearer s3cret"}};
  const auto ok = s.client().Post("/v1/admin/reload", auth, "", "text/plain");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // Garbage on a raw socket does not stop the server.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string junk = "\x16\x03\x01 BLAH /\r\n\r\nContent-Length: -5\r\n\r\n";
  ASSERT_GT(::write(fd, junk.data(), junk.size()), 0);
  char buf[512];
  const ssize_t got = ::read(fd, buf, sizeof buf);  // whatever it answers, if anything
  (void)got;
  ::close(fd);
  // An image whose header declares more pixels than allowed: refused before decoding.
  const std::string wide = data::encode_png(torch::full({40, 40, 3}, 7, torch::kByte));  // 1600 px, a few bytes
  expect_error(s.client().Post("/v1/tasks/t0/predict", wide, "image/png"), 413, "image_too_large");
  const auto after = s.client().Post("/v1/tasks/t0/predict", img, "image/png");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

// Issue 15, rows 3 and 5: the body is the image whatever the Content-Type says (curl
// --data-binary sends form-urlencoded, which httplib alone capped at 8 KB), or the first
// part of a multipart form; a second server on a port in use does not start.
TEST(Serve, AnyContentTypeCarriesTheImageAndAPortInUseIsRefused) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 23);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  Served s(ts.store, o);
  const std::string img = png_of(3, 64);  // noise: tens of kilobytes
  ASSERT_GT(img.size(), 8192u);
  const auto as_png = s.client().Post("/v1/tasks/t0/predict", img, "image/png");
  ASSERT_TRUE(as_png);
  ASSERT_EQ(as_png->status, 200) << as_png->body;
  for (const char* type : {"application/x-www-form-urlencoded", "application/octet-stream", "text/plain"}) {
    const auto r = s.client().Post("/v1/tasks/t0/predict", img, type);
    ASSERT_TRUE(r) << type;
    EXPECT_EQ(r->status, 200) << type << ": " << r->body;
    EXPECT_EQ(r->body, as_png->body) << type;
  }
  httplib::MultipartFormDataItems form = {{"image", img, "x.png", "image/png"}, {"note", "ignored", "", ""}};
  const auto multi = s.client().Post("/v1/tasks/t0/predict", form);
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->status, 200) << multi->body;
  EXPECT_EQ(multi->body, as_png->body);

  // A wrong method is 405 with the methods the path answers (row 15).
  auto wrong = s.client().Post("/healthz", std::string("x"), "text/plain");
  expect_error(wrong, 405, "method_not_allowed");
  EXPECT_EQ(wrong->get_header_value("Allow"), "GET");
  wrong = s.client().Get("/v1/tasks/t0/predict");
  expect_error(wrong, 405, "method_not_allowed");
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST");
  const auto big_k = s.client().Post("/v1/tasks/t0/predict?top_k=1000000", img, "image/png");
  expect_error(big_k, 400, "bad_request");
  EXPECT_NE(big_k->body.find("[1, 100000]"), std::string::npos) << big_k->body;

  serve::EngineOptions eo;
  eo.store_dir = ts.store;
  serve::Engine engine(eo);
  serve::HttpOptions same;
  same.host = "127.0.0.1";
  same.port = s.port();
  serve::HttpServer second(engine, same);
  const std::string msg = test::message_of<ConfigError>([&] { second.bind(); });
  EXPECT_NE(msg.find("in use"), std::string::npos) << msg;
}

// Issue 15, row 7: small files declaring large images are decoded only as far as
// --max-decode-pixels allows at once; the rest wait, then get 503, and the server goes on.
TEST(Serve, DecodesAtOnceAreBoundedByTheirDeclaredPixels) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 24);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.max_decode_pixels = 1;  // one image at a time
  o.decode_wait_ms = 0;     // and no waiting
  Served s(ts.store, o);
  const std::string big = data::encode_png(torch::full({1200, 1200, 3}, 9, torch::kByte));  // small file, 1.44 MP
  std::vector<std::future<int>> answers;
  for (int i = 0; i < 32; ++i) {
    answers.push_back(std::async(std::launch::async, [&] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(60);
      const auto r = c.Post("/v1/tasks/t0/predict", big, "image/png");
      return r ? r->status : -1;
    }));
  }
  int ok = 0, busy = 0;
  for (auto& a : answers) {
    const int status = a.get();
    ok += status == 200;
    busy += status == 503;
    EXPECT_TRUE(status == 200 || status == 503) << status;
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1) << "32 decodes at once never overlapped";
  const auto after = s.client().Post("/v1/tasks/t0/predict", big, "image/png");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

TEST(Serve, AFullQueueAnswers503WithRetryAfter) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 23);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.http_threads = 12;
  o.batcher.capacity = 1;
  o.batcher.max_batch = 64;
  o.batcher.max_wait_ms = 300;  // the first request waits; the others find the queue full
  Served s(ts.store, o);
  const std::string img = png_of(3);
  std::vector<std::future<httplib::Result>> replies;
  for (int i = 0; i < 8; ++i) {
    replies.push_back(std::async(std::launch::async, [&s, &img] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(30);
      return c.Post("/v1/tasks/t0/predict", img, "image/png");
    }));
  }
  int ok = 0, busy = 0;
  for (auto& f : replies) {
    const httplib::Result r = f.get();
    ASSERT_TRUE(r);
    if (r->status == 200) ++ok;
    if (r->status == 503) {
      ++busy;
      EXPECT_EQ(r->get_header_value("Retry-After"), "1");
      EXPECT_EQ(json::parse(r->body)["error"]["type"], "overloaded");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 8);
}

TEST(Serve, RequestsOfDifferentTasksShareBatches) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 8, kSize, 24);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.http_threads = 16;
  o.batcher.max_wait_ms = 200;
  o.batcher.max_batch = 8;
  Served s(ts.store, o);
  std::vector<std::future<httplib::Result>> replies;
  for (int i = 0; i < 8; ++i) {
    replies.push_back(std::async(std::launch::async, [&s, i] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(30);
      return c.Post(("/v1/tasks/t" + std::to_string(i) + "/predict").c_str(), png_of(i), "image/png");
    }));
  }
  for (int i = 0; i < 8; ++i) {
    const httplib::Result r = replies[static_cast<size_t>(i)].get();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["task"], "t" + std::to_string(i));
  }
  const json stats = body(s.client().Get("/v1/stats"));
  EXPECT_EQ(stats["served"], 8);
  EXPECT_LT(stats["batches"].get<int>(), 8) << stats.dump();  // at least two tasks shared a forward
  EXPECT_GE(stats["max_batch"].get<int>(), 2);
}

TEST(Serve, ABadTaskFileFailsOnlyItsOwnRequests) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 2, kSize, 26);
  {  // t1's file goes bad on disk before anything loaded it
    const std::string f = ts.store + "/" + store::Store::open(ts.store).find("t1")->file;
    std::string b = read_file(f);
    b[b.size() - 5] ^= 0x11;
    std::ofstream(f, std::ios::binary | std::ios::trunc) << b;
  }
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.batcher.max_wait_ms = 200;  // both requests land in one batch
  Served s(ts.store, o);
  auto post = [&s](const std::string& task) {
    return std::async(std::launch::async, [&s, task] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(30);
      return c.Post(("/v1/tasks/" + task + "/predict").c_str(), png_of(5), "image/png");
    });
  };
  auto good = post("t0");
  auto bad = post("t1");
  const httplib::Result g = good.get();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 200) << g->body;
  expect_error(bad.get(), 500, "store_error");
  EXPECT_EQ(body(s.client().Get("/healthz"))["status"], "ok");
}

TEST(Serve, NewTasksAreServedWithoutARestart) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 25);
  serve::HttpOptions o;
  o.watch_seconds = 0.05;
  Served s(ts.store, o);
  const std::string img = png_of(4);
  expect_error(s.client().Post("/v1/tasks/fresh/predict", img, "image/png"), 404, "not_found");
  store::Store st = store::Store::open(ts.store);
  store::Adapter a = st.load("t0");
  a.task = "fresh";
  st.put(a);
  int status = 0;
  for (int i = 0; i < 200 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    const auto r = s.client().Post("/v1/tasks/fresh/predict", img, "image/png");
    status = r ? r->status : 0;
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body(s.client().Get("/healthz"))["tasks"], 2);
}

// Issue 15, row 4: connections that trickle their request a byte at a time hold no
// thread, so the server keeps answering others; past the deadlines they are cut off.
TEST(Serve, TricklingClientsAreCutOffAndTheRestAreServed) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 27);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  o.http_threads = 2;  // fewer than the trickling connections
  o.request_timeout_s = 1.5;
  o.body_timeout_s = 1.5;
  Served s(ts.store, o);
  // 16 connections trickling a request head, 4 trickling a body; one byte each per 100 ms.
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a') + "\r\n\r\n";
  const std::string body_head = "POST /v1/tasks/t0/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n";
  std::vector<int> fds;
  for (int i = 0; i < 20; ++i) {
    fds.push_back(connect_raw(s.port()));
    if (i >= 16) {
      ASSERT_EQ(::send(fds.back(), body_head.data(), body_head.size(), MSG_NOSIGNAL), ssize_t(body_head.size()));
    }
  }
  std::vector<int> cut_after_ms(fds.size(), -1);
  const auto start = std::chrono::steady_clock::now();
  std::thread trickler([&] {
    for (size_t step = 0; step < 100; ++step) {
      if (std::all_of(cut_after_ms.begin(), cut_after_ms.end(), [](int ms) { return ms >= 0; })) break;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (cut_after_ms[i] >= 0) continue;
        const char byte = i < 16 ? head[step % head.size()] : 'x';
        if (::send(fds[i], &byte, 1, MSG_NOSIGNAL) != 1) {
          cut_after_ms[i] = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - start)
                                                 .count());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  // Meanwhile others are served at once, predictions included.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto h = s.client().Get("/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    const auto p = s.client().Post("/v1/tasks/t0/predict", png_of(i), "image/png");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->status, 200) << p->body;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  }
  trickler.join();
  for (size_t i = 0; i < fds.size(); ++i) {
    // Cut off between the deadline and a few seconds after it (the trickle would run 10 s).
    EXPECT_GE(cut_after_ms[i], 1400) << "connection " << i;
    EXPECT_LE(cut_after_ms[i], 5000) << "connection " << i;
    ::close(fds[i]);
  }
  const json stats = body(s.client().Get("/v1/stats"));
  EXPECT_GE(stats["connections"]["cut_off"].get<int>(), 20) << stats.dump();
}

// Issue 15, row 13: requests pipelined in one write are all answered, in order.
TEST(Serve, PipelinedRequestsAreAnsweredInOrder) {
  test::TempDir dir("serve");
  const test::TestStore ts = test::make_test_store(dir.path(), "clr", 1, kSize, 28);
  serve::HttpOptions o;
  o.watch_seconds = 0;
  Served s(ts.store, o);
  const std::string img = png_of(6);
  const std::string requests = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                               "POST /v1/tasks/t0/predict?top_k=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                               "Content-Length: " + std::to_string(img.size()) + "\r\n\r\n" + img +
                               "GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /v1/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const int fd = connect_raw(s.port());
  ASSERT_EQ(::send(fd, requests.data(), requests.size(), MSG_NOSIGNAL), ssize_t(requests.size()));
  const std::string raw = read_until_closed(fd, 10);
  ::close(fd);
  EXPECT_EQ(statuses_in(raw), (std::vector<int>{200, 200, 404, 200})) << raw;
  const size_t ok = raw.find("\"status\":\"ok\""), top = raw.find("\"top\":["), missing = raw.find("no route"),
               tasks = raw.find("\"tasks\":[");
  EXPECT_TRUE(ok < top && top < missing && missing < tasks) << raw;
}

}  // namespace
}  // namespace clr
