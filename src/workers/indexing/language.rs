//! Language detection from a file's name: exact names first (`Makefile`), then the extension.
//!
//! Owns the name → language table. It must not read file contents: the indexer decides on
//! the name alone, so detection costs no system call.

/// The language of a file called `name` (its last path component), if we know it.
pub fn detect(name: &[u8]) -> Option<&'static str> {
    if let Some(lang) = by_file_name(name) {
        return Some(lang);
    }
    let dot = memchr::memrchr(b'.', name)?;
    if dot == 0 {
        return None; // ".bashrc"-style names have no extension
    }
    let ext = &name[dot + 1..];
    if ext.is_empty() || ext.len() > 12 {
        return None;
    }
    let mut lower = [0u8; 12];
    for (d, s) in lower.iter_mut().zip(ext) {
        *d = s.to_ascii_lowercase();
    }
    by_extension(&lower[..ext.len()])
}

fn by_file_name(name: &[u8]) -> Option<&'static str> {
    Some(match name {
        b"Makefile" | b"makefile" | b"GNUmakefile" => "make",
        b"Dockerfile" | b"Containerfile" => "dockerfile",
        b"CMakeLists.txt" => "cmake",
        b"Cargo.lock" | b"Pipfile" => "toml",
        b"Gemfile" | b"Rakefile" | b"Gemfile.lock" => "ruby",
        b"BUILD" | b"BUILD.bazel" | b"WORKSPACE" => "starlark",
        b"LICENSE" | b"LICENCE" | b"COPYING" | b"LICENSE-MIT" | b"LICENSE-APACHE" => "text",
        b"go.mod" | b"go.sum" => "go-mod",
        b"meson.build" => "meson",
        b"Justfile" | b"justfile" => "just",
        _ => return None,
    })
}

fn by_extension(ext: &[u8]) -> Option<&'static str> {
    Some(match ext {
        b"rs" => "rust",
        b"py" | b"pyi" | b"pyw" => "python",
        b"js" | b"mjs" | b"cjs" | b"jsx" => "javascript",
        b"ts" | b"mts" | b"cts" | b"tsx" => "typescript",
        b"go" => "go",
        b"c" | b"h" => "c",
        b"cc" | b"cpp" | b"cxx" | b"c++" | b"hh" | b"hpp" | b"hxx" | b"h++" | b"inl" | b"ipp" => {
            "cpp"
        }
        b"m" | b"mm" => "objective-c",
        b"cs" => "csharp",
        b"java" => "java",
        b"kt" | b"kts" => "kotlin",
        b"scala" | b"sc" => "scala",
        b"groovy" | b"gradle" => "groovy",
        b"swift" => "swift",
        b"rb" | b"gemspec" | b"rake" => "ruby",
        b"php" => "php",
        b"pl" | b"pm" | b"t" => "perl",
        b"lua" => "lua",
        b"r" => "r",
        b"jl" => "julia",
        b"hs" | b"lhs" => "haskell",
        b"ml" | b"mli" => "ocaml",
        b"fs" | b"fsi" | b"fsx" => "fsharp",
        b"ex" | b"exs" => "elixir",
        b"erl" | b"hrl" => "erlang",
        b"clj" | b"cljs" | b"cljc" | b"edn" => "clojure",
        b"el" | b"lisp" | b"scm" | b"rkt" => "lisp",
        b"dart" => "dart",
        b"zig" => "zig",
        b"nim" => "nim",
        b"v" | b"sv" | b"svh" | b"vhd" | b"vhdl" => "hdl",
        b"s" | b"asm" => "assembly",
        b"wat" | b"wast" => "webassembly",
        b"sh" | b"bash" | b"zsh" | b"ksh" | b"fish" => "shell",
        b"ps1" | b"psm1" => "powershell",
        b"bat" | b"cmd" => "batch",
        b"toml" => "toml",
        b"yaml" | b"yml" => "yaml",
        b"json" | b"jsonc" | b"json5" => "json",
        b"ron" => "ron",
        b"xml" | b"xsd" | b"xsl" | b"svg" | b"plist" => "xml",
        b"ini" | b"cfg" | b"conf" | b"properties" => "ini",
        b"md" | b"markdown" | b"mdx" => "markdown",
        b"rst" => "restructuredtext",
        b"adoc" | b"asciidoc" => "asciidoc",
        b"tex" | b"sty" | b"bib" => "tex",
        b"txt" => "text",
        b"html" | b"htm" | b"xhtml" => "html",
        b"css" => "css",
        b"scss" | b"sass" => "scss",
        b"less" => "less",
        b"vue" => "vue",
        b"svelte" => "svelte",
        b"sql" => "sql",
        b"proto" => "protobuf",
        b"graphql" | b"gql" => "graphql",
        b"tf" | b"hcl" => "hcl",
        b"nix" => "nix",
        b"cmake" => "cmake",
        b"mk" => "make",
        b"dockerfile" => "dockerfile",
        b"csv" | b"tsv" => "csv",
        b"lock" => "lockfile",
        b"diff" | b"patch" => "diff",
        b"png" | b"jpg" | b"jpeg" | b"gif" | b"bmp" | b"ico" | b"webp" => "image",
        b"gz" | b"tgz" | b"zip" | b"xz" | b"bz2" | b"zst" | b"tar" | b"crate" => "archive",
        b"wasm" => "wasm-binary",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn names_and_extensions() {
        assert_eq!(detect(b"main.rs"), Some("rust"));
        assert_eq!(detect(b"setup.PY"), Some("python"));
        assert_eq!(detect(b"Makefile"), Some("make"));
        assert_eq!(detect(b"CMakeLists.txt"), Some("cmake"));
        assert_eq!(detect(b"notes.txt"), Some("text"));
        assert_eq!(detect(b"a.tar.gz"), Some("archive"));
        assert_eq!(detect(b"x.d.ts"), Some("typescript"));
        assert_eq!(detect(b".bashrc"), None);
        assert_eq!(detect(b"README"), None);
        assert_eq!(detect(b"trailing."), None);
        assert_eq!(detect(b"weird.averyveryverylongextension"), None);
    }
}
