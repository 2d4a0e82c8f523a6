#pragma once
/// \file json.hpp
/// A small JSON value, parser and writer (RFC 8259), enough for file headers
/// such as the safetensors one. No external dependency. Objects keep their
/// keys sorted (std::map); numbers keep their integer value exactly when they
/// are written without a fraction or exponent.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protoseg/error.hpp"

namespace protoseg::io {

/// A JSON value: null, bool, integer, floating number, string, array or object.
class json_value {
 public:
  using array = std::vector<json_value>;
  using object = std::map<std::string, json_value>;

  json_value() = default;
  json_value(std::nullptr_t) {}
  json_value(bool b) : v_(b) {}
  json_value(int i) : v_(static_cast<std::int64_t>(i)) {}
  json_value(std::int64_t i) : v_(i) {}
  json_value(double d) : v_(d) {}
  json_value(const char* s) : v_(std::string(s)) {}
  json_value(std::string s) : v_(std::move(s)) {}
  json_value(array a) : v_(std::make_shared<array>(std::move(a))) {}
  json_value(object o) : v_(std::make_shared<object>(std::move(o))) {}

  bool is_null() const noexcept { return v_.index() == 0; }
  bool is_bool() const noexcept { return v_.index() == 1; }
  bool is_integer() const noexcept { return v_.index() == 2; }
  bool is_number() const noexcept { return v_.index() == 2 || v_.index() == 3; }
  bool is_string() const noexcept { return v_.index() == 4; }
  bool is_array() const noexcept { return v_.index() == 5; }
  bool is_object() const noexcept { return v_.index() == 6; }

  bool as_bool() const { return get<bool>("a boolean"); }
  std::int64_t as_integer() const { return get<std::int64_t>("an integer"); }
  double as_number() const {
    if (is_integer()) return static_cast<double>(std::get<std::int64_t>(v_));
    return get<double>("a number");
  }
  const std::string& as_string() const { return get<std::string>("a string"); }
  const array& as_array() const { return *get<std::shared_ptr<array>>("an array"); }
  const object& as_object() const { return *get<std::shared_ptr<object>>("an object"); }

  /// The member `key` of an object, or nullptr when absent.
  const json_value* find(const std::string& key) const {
    const auto& o = as_object();
    auto it = o.find(key);
    return it == o.end() ? nullptr : &it->second;
  }

  /// The kind of value, for messages ("object", "string", ...).
  const char* kind() const noexcept {
    static const char* names[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
    return names[v_.index()];
  }

  /// Compact JSON text (no spaces), with strings escaped as RFC 8259 asks.
  std::string dump() const {
    std::string out;
    dump_into(out);
    return out;
  }

  /// Indented JSON text: arrays and objects one member per line, `indent`
  /// spaces per level; arrays of numbers stay on one line.
  std::string dump(int indent) const {
    std::string out;
    dump_pretty(out, indent, 0);
    out += '\n';
    return out;
  }

 private:
  template <class X>
  const X& get(const char* what) const {
    if (const X* p = std::get_if<X>(&v_)) return *p;
    ::protoseg::detail::fail<value_error>("json: expected ", what, ", got ", kind());
  }

  static void dump_string(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    out += '"';
  }

  void dump_pretty(std::string& out, int indent, int level) const {
    const std::string pad(static_cast<std::size_t>(indent * (level + 1)), ' ');
    const std::string end_pad(static_cast<std::size_t>(indent * level), ' ');
    if (is_array()) {
      const auto& a = as_array();
      bool flat = true;
      for (const auto& x : a) flat = flat && !x.is_array() && !x.is_object();
      if (flat || a.empty()) return dump_into(out);
      out += "[\n";
      for (std::size_t i = 0; i < a.size(); ++i) {
        out += pad;
        a[i].dump_pretty(out, indent, level + 1);
        out += i + 1 < a.size() ? ",\n" : "\n";
      }
      out += end_pad + "]";
    } else if (is_object()) {
      const auto& o = as_object();
      if (o.empty()) return dump_into(out);
      out += "{\n";
      std::size_t i = 0;
      for (const auto& [k, x] : o) {
        out += pad;
        dump_string(out, k);
        out += ": ";
        x.dump_pretty(out, indent, level + 1);
        out += ++i < o.size() ? ",\n" : "\n";
      }
      out += end_pad + "}";
    } else {
      dump_into(out);
    }
  }

  void dump_into(std::string& out) const {
    switch (v_.index()) {
      case 0: out += "null"; break;
      case 1: out += std::get<bool>(v_) ? "true" : "false"; break;
      case 2: out += std::to_string(std::get<std::int64_t>(v_)); break;
      case 3: {
        const double d = std::get<double>(v_);
        if (!std::isfinite(d)) ::protoseg::detail::fail<value_error>("json: cannot write the non-finite number ", d);
        // The shortest text that reads back as the same double (0.1, not
        // 0.10000000000000001).
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, d);
        out.append(buf, r.ptr);
        break;
      }
      case 4: dump_string(out, std::get<std::string>(v_)); break;
      case 5: {
        out += '[';
        bool first = true;
        for (const auto& x : as_array()) {
          if (!first) out += ',';
          first = false;
          x.dump_into(out);
        }
        out += ']';
        break;
      }
      default: {
        out += '{';
        bool first = true;
        for (const auto& [k, x] : as_object()) {
          if (!first) out += ',';
          first = false;
          dump_string(out, k);
          out += ':';
          x.dump_into(out);
        }
        out += '}';
      }
    }
  }

  std::variant<std::monostate, bool, std::int64_t, double, std::string, std::shared_ptr<array>,
               std::shared_ptr<object>>
      v_;
};

namespace detail {

/// Recursive-descent JSON parser; errors are value_error with the byte offset.
class json_parser {
 public:
  explicit json_parser(std::string_view text) : s_(text) {}

  json_value parse_document() {
    skip_ws();
    json_value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected text after the value");
    return v;
  }

 private:
  static constexpr int max_depth = 64;

  [[noreturn]] void error(const std::string& what) const {
    ::protoseg::detail::fail<value_error>("json: ", what, " at byte ", pos_);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (pos_ >= s_.size() || s_[pos_] != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool consume_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) == w) {
      pos_ += w.size();
      return true;
    }
    return false;
  }

  json_value parse_value(int depth) {
    if (depth > max_depth) error("nesting deeper than 64 levels");
    if (pos_ >= s_.size()) error("unexpected end of text");
    const char c = s_[pos_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return json_value(parse_string());
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if (consume_word("true")) return json_value(true);
    if (consume_word("false")) return json_value(false);
    if (consume_word("null")) return json_value(nullptr);
    error(std::string("unexpected character '") + c + "'");
  }

  json_value parse_object(int depth) {
    expect('{');
    json_value::object o;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return json_value(std::move(o));
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') error("expected a string key");
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (o.count(key)) error("duplicate key \"" + key + "\"");
      o.emplace(std::move(key), parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return json_value(std::move(o));
    }
  }

  json_value parse_array(int depth) {
    expect('[');
    json_value::array a;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return json_value(std::move(a));
    }
    for (;;) {
      skip_ws();
      a.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return json_value(std::move(a));
    }
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) error("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!consume_word("\\u")) error("lone high surrogate in \\u escape");
            const unsigned lo = parse_hex4();
            if (lo < 0xDC00 || lo >= 0xE000) error("bad low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("lone low surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: error(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  json_value parse_number() {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      error("bad number");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("bad number: no digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("bad number: no digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const std::string text(s_.substr(start, pos_ - start));
    if (integral) {
      // Exact integers; the value must fit in int64.
      const bool neg = text[0] == '-';
      std::uint64_t acc = 0;
      const std::uint64_t limit = neg ? std::uint64_t(1) << 63 : (std::uint64_t(1) << 63) - 1;
      for (std::size_t i = neg ? 1 : 0; i < text.size(); ++i) {
        const unsigned d = unsigned(text[i] - '0');
        if (acc > (limit - d) / 10) error("integer " + text + " does not fit in 64 bits");
        acc = acc * 10 + d;
      }
      if (neg) return json_value(acc == (std::uint64_t(1) << 63) ? std::numeric_limits<std::int64_t>::min()
                                                                 : -static_cast<std::int64_t>(acc));
      return json_value(static_cast<std::int64_t>(acc));
    }
    std::istringstream is(text);
    is.imbue(std::locale::classic());
    double d = 0;
    is >> d;
    if (!is) error("bad number " + text);
    return json_value(d);
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// Parses JSON text; throws value_error naming the byte offset of a problem.
inline json_value parse_json(std::string_view text) { return detail::json_parser(text).parse_document(); }

}  // namespace protoseg::io
