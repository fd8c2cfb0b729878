// cu_to_cpp IN.cu OUT.cpp: rewrites the three CUDA constructs that have no C++ spelling, so that the emulated tier
// can compile a .cu file as C++ against the emulated headers (cuda/tests/emu/include):
//   kernel<<<grid, block, shared, stream>>>(args)  ->  ::ne_emu::launch(kernel, "kernel", __FILE__, __LINE__,
//                                                                          grid, block, shared, stream)(args)
//   extern __shared__ T name[];                    ->  T* name = ::ne_emu::dynamic_shared_as<T>();
//   __shared__ T a[N], *b;                         ->  per declarator, a reference to the block's instance
// Everything else is copied as it is (comments and literals untouched), line for line, after `#include
// <cuda_runtime.h>` (which nvcc includes implicitly) and a #line directive, so diagnostics and stack traces name
// the .cu file and its lines.
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

int newlines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

class Rewriter {
public:
    Rewriter(std::string source, std::string path) : src_(std::move(source)), path_(std::move(path)) {}

    std::string run() {
        out_ = "#include <cuda_runtime.h>\n#line 1 \"" + path_ + "\"\n";
        while (i_ < src_.size()) {
            if (starts("//")) {
                copy_until("\n", false);
            } else if (starts("/*")) {
                copy_until("*/", true);
            } else if (src_[i_] == '"' || (src_[i_] == '\'' && !(i_ > 0 && std::isdigit(static_cast<unsigned char>(src_[i_ - 1]))))) {
                copy_literal();
            } else if (starts("R\"") && (i_ == 0 || !ident_char(src_[i_ - 1]))) {
                copy_raw_string();
            } else if (starts("<<<")) {
                launch();
            } else if (ident_char(src_[i_]) && (i_ == 0 || !ident_char(src_[i_ - 1]))) {
                size_t e = i_;
                while (e < src_.size() && ident_char(src_[e])) ++e;
                const std::string word = src_.substr(i_, e - i_);
                if (word == "__shared__") {
                    i_ = e;
                    shared();
                } else {
                    out_ += word;
                    i_ = e;
                }
            } else {
                out_ += src_[i_++];
            }
        }
        return out_;
    }

private:
    bool starts(const char* s) const { return src_.compare(i_, std::char_traits<char>::length(s), s) == 0; }

    [[noreturn]] void fail(const std::string& what) const {
        int line = 1;
        for (size_t k = 0; k < i_ && k < src_.size(); ++k) line += src_[k] == '\n';
        throw std::runtime_error(path_ + ":" + std::to_string(line) + ": " + what);
    }

    void copy_until(const char* end, bool include_end) {
        const size_t e = src_.find(end, i_ + 2);
        const size_t stop = e == std::string::npos ? src_.size() : e + (include_end ? std::char_traits<char>::length(end) : 0);
        out_.append(src_, i_, stop - i_);
        i_ = stop;
    }

    void copy_literal() {
        const char quote = src_[i_];
        size_t e = i_ + 1;
        while (e < src_.size() && src_[e] != quote) {
            if (src_[e] == '\\') ++e;
            if (src_[e] == '\n') fail("unterminated literal");
            ++e;
        }
        out_.append(src_, i_, e + 1 - i_);
        i_ = e + 1;
    }

    void copy_raw_string() {
        const size_t open = src_.find('(', i_);
        if (open == std::string::npos) fail("malformed raw string");
        const std::string delimiter = ")" + src_.substr(i_ + 2, open - i_ - 2) + "\"";
        const size_t close = src_.find(delimiter, open);
        if (close == std::string::npos) fail("unterminated raw string");
        out_.append(src_, i_, close + delimiter.size() - i_);
        i_ = close + delimiter.size();
    }

    // Text up to the next top-level `stop` (outside brackets, comments and literals); i_ is left on stop.
    std::string until_top_level(const std::string& stop) {
        const size_t begin = i_;
        int depth = 0;
        while (i_ < src_.size()) {
            if (depth == 0 && starts(stop.c_str())) return src_.substr(begin, i_ - begin);
            const char c = src_[i_];
            if (starts("//") || starts("/*")) fail("comment inside a construct being rewritten");
            if (c == '"' || c == '\'') {
                const size_t save = out_.size();
                copy_literal();
                out_.resize(save);
                continue;
            }
            if (c == '(' || c == '[' || c == '{') ++depth;
            if (c == ')' || c == ']' || c == '}') --depth;
            ++i_;
        }
        fail("no closing " + stop);
    }

    // kernel<<<config>>>(args): the callee is at the end of out_ (an identifier, possibly qualified, with template
    // arguments).
    void launch() {
        size_t e = out_.size();
        while (e > 0 && std::isspace(static_cast<unsigned char>(out_[e - 1]))) --e;
        size_t b = e;
        for (;;) {
            if (b > 0 && out_[b - 1] == '>') {  // template arguments
                int depth = 0;
                do {
                    if (out_[b - 1] == '>') ++depth;
                    if (out_[b - 1] == '<') --depth;
                    --b;
                } while (b > 0 && depth > 0);
            }
            while (b > 0 && ident_char(out_[b - 1])) --b;
            if (b >= 2 && out_.compare(b - 2, 2, "::") == 0) {
                b -= 2;
                continue;
            }
            break;
        }
        const std::string callee = out_.substr(b, e - b);
        if (callee.empty() || !(ident_char(callee[0]) || callee[0] == ':')) fail("cannot find the kernel of a launch");
        std::string name;
        for (char c : callee)
            if (c != '"' && c != '\\') name += c;
        out_.resize(b);
        out_ += "::ne_emu::launch(" + callee + ", \"" + name + "\", __FILE__, __LINE__, ";
        i_ += 3;
        out_ += until_top_level(">>>");
        out_ += ")";
        i_ += 3;
    }

    static std::string strip_alignment(std::string s) {
        for (const char* spec : {"alignas", "__align__"}) {
            size_t at;
            while ((at = s.find(spec)) != std::string::npos) {
                size_t p = s.find('(', at);
                int depth = 0;
                size_t q = p;
                for (; q < s.size(); ++q) {
                    if (s[q] == '(') ++depth;
                    if (s[q] == ')' && --depth == 0) break;
                }
                s.erase(at, q + 1 - at);
            }
        }
        return s;
    }

    void shared() {
        // `extern __shared__`: the word extern is the last thing written.
        size_t e = out_.size();
        while (e > 0 && std::isspace(static_cast<unsigned char>(out_[e - 1]))) --e;
        const bool is_extern = e >= 6 && out_.compare(e - 6, 6, "extern") == 0 && (e == 6 || !ident_char(out_[e - 7]));
        const std::string text = until_top_level(";");
        ++i_;  // the ;
        const std::string declaration = trim(strip_alignment(text));
        std::string replacement;
        if (is_extern) {
            out_.resize(e - 6);
            const size_t bracket = declaration.rfind('[');
            if (bracket == std::string::npos || trim(declaration.substr(bracket)) != "[]")
                fail("extern __shared__ must declare an array of unknown size: " + declaration);
            std::string head = trim(declaration.substr(0, bracket));
            size_t n = head.size();
            while (n > 0 && ident_char(head[n - 1])) --n;
            const std::string name = head.substr(n), type = trim(head.substr(0, n));
            if (name.empty() || type.empty()) fail("cannot read the extern __shared__ declaration: " + declaration);
            replacement = type + "* " + name + " = ::ne_emu::dynamic_shared_as<" + type + ">();";
        } else {
            // Split the declarators at top-level commas; the first carries the type.
            std::vector<std::string> parts;
            int depth = 0;
            std::string current;
            for (char c : declaration) {
                if (c == '(' || c == '[' || c == '<') ++depth;
                if (c == ')' || c == ']' || c == '>') --depth;
                if (c == ',' && depth == 0) {
                    parts.push_back(trim(current));
                    current.clear();
                } else {
                    current += c;
                }
            }
            parts.push_back(trim(current));
            std::string type;
            for (size_t k = 0; k < parts.size(); ++k) {
                std::string part = parts[k];
                if (part.find('=') != std::string::npos) fail("__shared__ variables cannot be initialised: " + part);
                const size_t bracket = part.find('[');
                std::string head = trim(part.substr(0, bracket == std::string::npos ? part.size() : bracket));
                const std::string dims = bracket == std::string::npos ? "" : part.substr(bracket);
                size_t n = head.size();
                while (n > 0 && ident_char(head[n - 1])) --n;
                const std::string name = head.substr(n);
                std::string before = trim(head.substr(0, n)), pointers;
                while (!before.empty() && (before.back() == '*' || before.back() == '&' ||
                                           std::isspace(static_cast<unsigned char>(before.back())))) {
                    if (!std::isspace(static_cast<unsigned char>(before.back()))) pointers.insert(0, 1, before.back());
                    before.pop_back();
                }
                if (k == 0) type = before;
                else if (!before.empty()) fail("unexpected text before a __shared__ declarator: " + before);
                if (name.empty() || type.empty()) fail("cannot read the __shared__ declaration: " + declaration);
                const std::string alias = "ne_emu_shared_type_" + name, tag = "ne_emu_shared_site_" + name;
                replacement += "using " + alias + " = " + type + pointers + dims + "; static char " + tag + "; " +
                               alias + "& " + name + " = ::ne_emu::static_shared_as<" + alias + ">(&" + tag + ");";
                if (k + 1 < parts.size()) replacement += " ";
            }
        }
        out_ += replacement + std::string(static_cast<size_t>(newlines(text)), '\n');
    }

    std::string src_, path_, out_;
    size_t i_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: cu_to_cpp IN.cu OUT.cpp\n";
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
        std::cerr << "cu_to_cpp: cannot read " << argv[1] << "\n";
        return 1;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    try {
        const std::string result = Rewriter(buffer.str(), argv[1]).run();
        std::ofstream out(argv[2], std::ios::binary);
        out << result;
        if (!out) {
            std::cerr << "cu_to_cpp: cannot write " << argv[2] << "\n";
            return 1;
        }
    } catch (const std::exception& e) {
        std::cerr << "cu_to_cpp: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
