// Training progress display.
//  * On a terminal: one status line rewritten in place ("\r" + line + clear-to-end-of-line),
//    e.g.  epoch 2/10 [=======>        ] 120/469 loss=0.231 acc=93.1% elapsed 0:05 eta 0:14
//    redrawn at most every min_interval_s; end_epoch replaces it with the summary line.
//  * Otherwise (a log file, a pipe): a plain line at most every line_interval_s (the
//    environment variable EQPROP_PROGRESS_INTERVAL, in seconds, replaces a finite interval;
//    an infinite one means no periodic lines: --quiet), plus the end-of-epoch summary
//    line, so logs stay short and readable. Plain lines fit 80 columns.
//  * Either way a status line too wide for its width drops fields from the last one on
//    (counters, elapsed time and ETA stay), then is cut.
// update() only reads a steady clock unless a redraw is due, so it costs nothing measurable;
// the update(batch, make_fields) overload also skips building the fields.
#pragma once
#include <chrono>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace eqprop {

class progress {
 public:
  /// Named values shown after the bar, e.g. {"loss", "0.231"}, {"", "1234 samples/s"} (an
  /// empty name shows the value alone).
  using fields = std::vector<std::pair<std::string, std::string>>;
  using clock = std::chrono::steady_clock;

  /// is_tty selects the terminal display; pass progress::stdout_is_terminal() for the
  /// automatic choice when writing to std::cout.
  progress(std::ostream& os, bool is_tty, double min_interval_s = 0.1, double line_interval_s = 10);
  /// Ends an unfinished terminal status line with a newline.
  ~progress();
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  /// True when stdout is a terminal (isatty) and TERM is set and not "dumb".
  static bool stdout_is_terminal();

  /// Starts an epoch. `epoch` is shown as given (pass it 1-based: "epoch 1/10").
  void begin_epoch(long epoch, long n_epochs, long n_batches);
  /// Reports that `batch` batches of the epoch are done (1..n_batches).
  void update(long batch, const fields& f);
  /// Same, but calls make_fields() (returning fields) only when something will be shown.
  template <class F>
  requires std::is_invocable_r_v<fields, F>
  void update(long batch, F&& make_fields) {
    if (due(batch)) render(batch, make_fields());
  }
  /// Ends the epoch with one line: "epoch i/n <summary> [<epoch time>]".
  void end_epoch(const std::string& summary);
  /// Prints a line of text (a warning, a checkpoint notice) without garbling the status line.
  void message(const std::string& line);
  /// Erases an open terminal status line, so that other output can follow on a clean line;
  /// the next update() draws it again. Does nothing otherwise.
  void clear();
  /// Names of the outer and inner counters, "epoch" and "batch" unless set (DEEP shows
  /// "seed 2/10 ... epoch 37/200").
  void set_labels(std::string outer, std::string inner) {
    outer_label_ = std::move(outer);
    inner_label_ = std::move(inner);
  }

  /// Whether update(batch, ...) would display something now.
  bool due(long batch) const;
  bool is_tty() const { return tty_; }
  /// Width that status lines are cut to (0 = no limit). Detected from the terminal (or
  /// $COLUMNS) when is_tty, 80 otherwise.
  void set_width(int columns) { width_ = columns; }

  /// "m:ss" or "h:mm:ss".
  static std::string format_duration(double seconds);

 private:
  void render(long batch, const fields& f);
  void write(const std::string& text);
  std::string status_line(long batch, const fields& f, double elapsed) const;
  double seconds_since(clock::time_point t) const;

  std::ostream& os_;
  bool tty_;
  double min_interval_s_, line_interval_s_;
  int width_ = 0;
  std::string outer_label_ = "epoch", inner_label_ = "batch";
  long epoch_ = 0, n_epochs_ = 0, n_batches_ = 0;
  clock::time_point epoch_start_, last_output_;
  bool shown_this_epoch_ = false;  // terminal: a status line was drawn this epoch
  bool line_open_ = false;         // terminal: a status line is on screen without newline
  long last_batch_shown_ = -1;
  fields last_fields_;
};

}  // namespace eqprop
