// Training progress display (terminal status line or periodic plain lines).
#include "eqprop/train/progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace eqprop {

namespace {

constexpr const char* kClearToEol = "\x1b[K";
constexpr int kBarWidth = 24;

int detect_width() {
  struct winsize ws {};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 0;
}

/// Cuts s to at most n bytes without splitting a UTF-8 character.
void truncate_utf8(std::string& s, std::size_t n) {
  if (s.size() <= n) return;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

}  // namespace

progress::progress(std::ostream& os, bool is_tty, double min_interval_s, double line_interval_s)
    : os_(os),
      tty_(is_tty),
      min_interval_s_(min_interval_s),
      line_interval_s_(line_interval_s),
      width_(is_tty ? detect_width() : 80),
      epoch_start_(clock::now()),
      last_output_(epoch_start_) {
  if (const char* env = std::getenv("EQPROP_PROGRESS_INTERVAL"); env && *env && std::isfinite(line_interval_s_)) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && *end == '\0' && v >= 0 && std::isfinite(v)) line_interval_s_ = v;
  }
}

progress::~progress() {
  if (line_open_) {
    try {
      write("\n");
    } catch (...) {
    }
  }
}

bool progress::stdout_is_terminal() {
  if (!::isatty(STDOUT_FILENO)) return false;
  const char* term = std::getenv("TERM");
  return term != nullptr && *term != '\0' && std::strcmp(term, "dumb") != 0;
}

std::string progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

double progress::seconds_since(clock::time_point t) const {
  return std::chrono::duration<double>(clock::now() - t).count();
}

void progress::write(const std::string& text) {
  os_.write(text.data(), static_cast<std::streamsize>(text.size()));
  os_.flush();
}

void progress::begin_epoch(long epoch, long n_epochs, long n_batches) {
  epoch_ = epoch;
  n_epochs_ = n_epochs;
  n_batches_ = n_batches;
  epoch_start_ = clock::now();
  shown_this_epoch_ = false;
  last_batch_shown_ = -1;
  last_fields_.clear();
}

bool progress::due(long batch) const {
  if (tty_) {
    if (!shown_this_epoch_) return true;
    if (n_batches_ > 0 && batch >= n_batches_ && last_batch_shown_ < n_batches_) return true;
    return seconds_since(last_output_) >= min_interval_s_;
  }
  return seconds_since(last_output_) >= line_interval_s_;
}

void progress::update(long batch, const fields& f) {
  if (due(batch)) render(batch, f);
}

std::string progress::status_line(long batch, const fields& f, double elapsed) const {
  std::string line = fmt::format("{} {}/{}", outer_label_, epoch_, n_epochs_);
  const bool known = n_batches_ > 0;
  const double frac = known ? std::clamp(static_cast<double>(batch) / static_cast<double>(n_batches_), 0.0, 1.0) : 0.0;
  if (tty_ && known) {
    const int filled = static_cast<int>(frac * kBarWidth);
    std::string bar(kBarWidth, ' ');
    for (int i = 0; i < filled; ++i) bar[i] = '=';
    if (filled < kBarWidth && batch > 0) bar[filled] = '>';
    line += fmt::format(" [{}] {}/{}", bar, batch, n_batches_);
  } else if (known) {
    line += fmt::format(" {} {}/{} ({}%)", inner_label_, batch, n_batches_, static_cast<int>(frac * 100));
  } else {
    line += fmt::format(" {} {}", inner_label_, batch);
  }
  for (const auto& [name, value] : f) {
    line += ' ';
    if (!name.empty()) line += name + '=';
    line += value;
  }
  line += " elapsed " + format_duration(elapsed);
  if (known) {
    const double eta =
        batch > 0 ? elapsed * static_cast<double>(n_batches_ - batch) / static_cast<double>(batch) : std::nan("");
    line += " eta " + format_duration(eta);
  }
  return line;
}

void progress::render(long batch, const fields& f) {
  // Too wide: the last fields go first, so that the counters, elapsed time and ETA stay.
  const double elapsed = seconds_since(epoch_start_);
  std::string line = status_line(batch, f, elapsed);
  const auto fits = [&] { return width_ <= 1 || line.size() <= static_cast<std::size_t>(width_ - 1); };
  for (std::size_t keep = f.size(); !fits() && keep > 0;)
    line = status_line(batch, fields(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(--keep)), elapsed);
  if (width_ > 1) truncate_utf8(line, static_cast<std::size_t>(width_ - 1));
  if (tty_) {
    write("\r" + line + kClearToEol);
    line_open_ = true;
  } else {
    write(line + "\n");
  }
  last_output_ = clock::now();
  shown_this_epoch_ = true;
  last_batch_shown_ = batch;
  last_fields_ = f;
}

void progress::clear() {
  if (tty_ && line_open_) {
    write(std::string("\r") + kClearToEol);
    line_open_ = false;
    shown_this_epoch_ = false;  // the next update() draws the line again
  }
}

void progress::end_epoch(const std::string& summary) {
  std::string line = fmt::format("{} {}/{}", outer_label_, epoch_, n_epochs_);
  if (!summary.empty()) line += " " + summary;
  line += " [" + format_duration(seconds_since(epoch_start_)) + "]";
  if (tty_) write("\r" + line + kClearToEol + "\n");
  else write(line + "\n");
  line_open_ = false;
  last_output_ = clock::now();
}

void progress::message(const std::string& text) {
  if (tty_ && line_open_) {
    std::string out = "\r";
    out += kClearToEol;
    out += text;
    out += '\n';
    write(out);
    line_open_ = false;
    if (last_batch_shown_ >= 0) render(last_batch_shown_, fields(last_fields_));
  } else {
    write(text + "\n");
  }
}

}  // namespace eqprop
