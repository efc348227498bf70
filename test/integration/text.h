// Bytes shortened and made readable for assertion messages (process output, what a
// socket received).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nspit::detail {

// The last `n` bytes of `s`, with "..." in front when something was cut.
std::string tail(const std::string& s, size_t n = 6000);
// At most `max` bytes of `s` with CR, LF and other non-printable bytes escaped (\r, \n,
// \xNN), plus "...(N bytes)" when something was cut.
std::string printable(std::string_view s, size_t max = 400);

}  // namespace nspit::detail
