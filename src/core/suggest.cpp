#include "eqprop/core/suggest.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace eqprop {
namespace {
std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view last_component(std::string_view key) {
  auto dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
  for (std::size_t j = 0; j <= m; ++j) prev[j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    prev2.swap(prev);
    prev.swap(cur);
  }
  return prev[m];
}

std::size_t typo_threshold(std::size_t len) { return len <= 3 ? 1 : std::max<std::size_t>(2, len / 3); }
}  // namespace

std::string suggest_closest(std::string_view name, const std::vector<std::string>& candidates) {
  const std::string lname = to_lower(name);
  const std::string_view llast = last_component(lname);
  const std::size_t thr_full = typo_threshold(lname.size());
  const std::size_t thr_last = typo_threshold(llast.size());
  std::string best;
  std::size_t best_score = SIZE_MAX, best_full = SIZE_MAX;
  for (const std::string& cand : candidates) {
    const std::string lc = to_lower(cand);
    const std::size_t d_full = edit_distance(lname, lc);
    std::size_t score = d_full <= thr_full ? d_full : SIZE_MAX;
    if (lname.find('.') != std::string::npos || lc.find('.') != std::string::npos) {
      const std::size_t d_last = edit_distance(llast, last_component(lc));
      if (d_last <= thr_last) score = std::min(score, d_last);
    }
    if (score == SIZE_MAX) continue;
    if (score < best_score || (score == best_score && d_full < best_full)) {
      best = cand;
      best_score = score;
      best_full = d_full;
    }
  }
  return best;
}

}  // namespace eqprop
