use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn parse(text: &str) -> Result<Ini, IniError> {
    Ini::parse(text, Path::new("/etc/sync"), &env_of(&[]))
}

fn ok(text: &str) -> Ini {
    match parse(text) {
        Ok(ini) => ini,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn err(text: &str) -> IniError {
    match parse(text) {
        Ok(ini) => panic!("expected an error, got {ini:?}"),
        Err(e) => e,
    }
}

#[test]
fn sections_keys_and_both_delimiters() {
    let ini = ok("[a]\nx = 1\ny: two\n[b]\nz=3\n");
    assert_eq!(ini.sections().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(ini.keys("a").collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(ini.get("a", "y"), Some(Value::Str("two".into())));
    assert_eq!(ini.get("b", "z"), Some(Value::Int(3)));
    assert_eq!(ini.line("b", "z"), Some(5));
    assert_eq!(ini.get("b", "x"), None);
    assert_eq!(ini.get("nope", "x"), None);
}

#[test]
fn first_delimiter_splits_and_urls_survive() {
    let ini = ok("[s]\npublic_url = http://h:5000/\na:b = c\n");
    assert_eq!(ini.get_raw("s", "public_url"), Some("http://h:5000/"));
    assert_eq!(ini.get_raw("s", "a"), Some("b = c"));
}

#[test]
fn keys_and_sections_are_case_sensitive() {
    let ini = ok("[s]\nSecret = A\nsecret = b\n[S]\nx = 1\n");
    assert_eq!(ini.get_raw("s", "Secret"), Some("A"));
    assert_eq!(ini.get_raw("s", "secret"), Some("b"));
    assert_eq!(ini.get_raw("S", "x"), Some("1"));
    assert_eq!(ini.get_raw("s", "SECRET"), None);
}

#[test]
fn hash_comments_only_full_line_and_semicolon_is_data() {
    let ini = ok("# top\n[s]\n  # indented comment\nx = a # b\n; y = 1\n");
    assert_eq!(ini.get_raw("s", "x"), Some("a # b"));
    assert_eq!(ini.get_raw("s", "; y"), Some("1"));
}

#[test]
fn semicolon_line_without_delimiter_is_an_error() {
    let e = err("[s]\n; just a note\n");
    assert_eq!((e.line, e.kind), (2, IniErrorKind::NotAnOption));
}

#[test]
fn section_header_ignores_trailing_text() {
    let ini = ok("[syncserver] # main\nx = 1\n");
    assert!(ini.has_section("syncserver"));
}

#[test]
fn continuation_lines_make_lists_and_drop_empty_lines() {
    let text = "[s]\nsecret =\n    one\n\n    two\n    # not a line\n    3\nnext = x\n";
    let ini = ok(text);
    assert_eq!(ini.get_raw("s", "secret"), Some("\none\n\ntwo\n3"));
    assert_eq!(
        ini.get("s", "secret"),
        Some(Value::List(vec![
            Value::Str("one".into()),
            Value::Str("two".into()),
            Value::Int(3)
        ]))
    );
    assert_eq!(
        ini.get_strings("s", "secret").unwrap_or_default(),
        ["one", "two", "3"]
    );
    assert_eq!(ini.get_raw("s", "next"), Some("x"));
}

#[test]
fn continuation_must_be_indented_deeper_than_its_option() {
    let e = err("[s]\n  a = 1\n  b\n");
    assert_eq!((e.line, e.kind), (3, IniErrorKind::NotAnOption));
    let ini = ok("[s]\n  a = 1\n   b\n");
    assert_eq!(ini.get_raw("s", "a"), Some("1\nb"));
}

#[test]
fn trailing_blank_lines_do_not_make_a_list() {
    let ini = ok("[s]\nx = abc\n\n\n[t]\n");
    assert_eq!(ini.get("s", "x"), Some(Value::Str("abc".into())));
}

#[test]
fn konfig_typing() {
    let ini = ok(concat!(
        "[t]\ni = 42\nn = -7\nf = 1.5\ng = 5.\nh = .5\nm = -.25\nq = \"007\"\n",
        "b1 = TRUE\nb2 = false\nyes = yes\ns = hello world\nbig = 99999999999999999999\n",
        "e = \nlone = \"\n"
    ));
    let get = |k| ini.get("t", k);
    assert_eq!(get("i"), Some(Value::Int(42)));
    assert_eq!(get("n"), Some(Value::Int(-7)));
    assert_eq!(get("f"), Some(Value::Float(1.5)));
    assert_eq!(get("g"), Some(Value::Float(5.0)));
    assert_eq!(get("h"), Some(Value::Float(0.5)));
    assert_eq!(get("m"), Some(Value::Float(-0.25)));
    assert_eq!(get("q"), Some(Value::Str("007".into())));
    assert_eq!(get("b1"), Some(Value::Bool(true)));
    assert_eq!(get("b2"), Some(Value::Bool(false)));
    assert_eq!(get("yes"), Some(Value::Str("yes".into())));
    assert_eq!(get("s"), Some(Value::Str("hello world".into())));
    assert_eq!(get("big"), Some(Value::Str("99999999999999999999".into())));
    assert_eq!(get("e"), Some(Value::Str(String::new())));
    assert_eq!(get("lone"), Some(Value::Str(String::new())));
    assert_eq!(Value::from_line("."), Value::Str(".".into()));
    assert_eq!(Value::from_line("1.2.3"), Value::Str("1.2.3".into()));
}

#[test]
fn all_digit_value_is_int_typed_but_string_untyped() {
    let ini = ok("[syncserver]\nsecret = 0123456789\n");
    assert_eq!(ini.get("syncserver", "secret"), Some(Value::Int(123456789)));
    assert_eq!(ini.get_raw("syncserver", "secret"), Some("0123456789"));
    assert_eq!(
        ini.get_strings("syncserver", "secret").unwrap_or_default(),
        ["0123456789"]
    );
}

#[test]
fn interpolation_here_env_and_references() {
    let env = env_of(&[("DATA", "/var/lib/sync"), ("DOLLAR", "a$b")]);
    let text = concat!(
        "[DEFAULT]\nroot = /srv\n",
        "[paths]\ndb = ${HERE}/sync.db\nenv = ${DATA}/x\nlit = ${DOLLAR}\n",
        "[s]\nname = sync\nsame = ${name}.db\ndef = ${root}/d\nother = ${paths:db}\n",
        "chain = ${paths:env}\nfromdef = ${DEFAULT:root}\nmoney = 5$$ and $${x}\n"
    );
    let ini = match Ini::parse(text, Path::new("/etc/sync"), &env) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(ini.get_raw("paths", "db"), Some("/etc/sync/sync.db"));
    assert_eq!(ini.get_raw("paths", "env"), Some("/var/lib/sync/x"));
    assert_eq!(ini.get_raw("paths", "lit"), Some("a$b"));
    assert_eq!(ini.get_raw("s", "same"), Some("sync.db"));
    assert_eq!(ini.get_raw("s", "def"), Some("/srv/d"));
    assert_eq!(ini.get_raw("s", "other"), Some("/etc/sync/sync.db"));
    assert_eq!(ini.get_raw("s", "chain"), Some("/var/lib/sync/x"));
    assert_eq!(ini.get_raw("s", "fromdef"), Some("/srv"));
    assert_eq!(ini.get_raw("s", "money"), Some("5$ and ${x}"));
    // [DEFAULT] options are visible from every existing section.
    assert_eq!(ini.get_raw("s", "root"), Some("/srv"));
}

#[test]
fn environment_wins_over_options_for_bare_names() {
    let env = env_of(&[("name", "fromenv")]);
    let ini = Ini::parse("[s]\nname = opt\nx = ${name}\n", Path::new("/"), &env);
    assert_eq!(
        ini.ok().and_then(|i| i.get("s", "x")),
        Some(Value::Str("fromenv".into()))
    );
}

#[test]
fn references_into_multiline_values_make_lists() {
    let ini = ok("[a]\nl =\n  x\n  y\n[b]\nm = ${a:l}\n");
    assert_eq!(
        ini.get("b", "m"),
        Some(Value::List(vec![
            Value::Str("x".into()),
            Value::Str("y".into())
        ]))
    );
}

#[test]
fn lone_dollar_is_an_error_with_its_line() {
    let e = err("[s]\nok = 1\nsecret = abc$def\n");
    assert_eq!(e.line, 3);
    assert!(matches!(e.kind, IniErrorKind::LoneDollar { ref key, .. } if key == "secret"));
    let shown = e
        .with_file(Path::new("/etc/sync/syncserver.ini"))
        .to_string();
    assert!(shown.starts_with("/etc/sync/syncserver.ini:3: "), "{shown}");
    assert!(shown.contains("$$"), "{shown}");
    assert!(
        !shown.contains("abc"),
        "the value must not be echoed: {shown}"
    );
    assert_eq!(err("[s]\nx = cost $\n").line, 2);
}

#[test]
fn lone_dollar_on_a_continuation_line_reports_the_option_line() {
    let e = err("[s]\nsecret =\n  a\n  b$c\n");
    assert_eq!(e.line, 2);
}

#[test]
fn bad_and_missing_references() {
    assert!(matches!(
        err("[s]\nx = ${oops\n").kind,
        IniErrorKind::BadReference { .. }
    ));
    assert!(matches!(
        err("[s]\nx = ${}\n").kind,
        IniErrorKind::BadReference { .. }
    ));
    assert!(matches!(
        err("[s]\nx = ${a:b:c}\n").kind,
        IniErrorKind::BadReference { .. }
    ));
    let e = err("[s]\nx = ${NOPE_NOT_SET}\n");
    assert!(
        matches!(e.kind, IniErrorKind::MissingReference { ref reference, .. } if reference == "NOPE_NOT_SET")
    );
    assert!(matches!(
        err("[s]\nx = ${t:y}\n").kind,
        IniErrorKind::MissingReference { .. }
    ));
}

#[test]
fn unclosed_reference_does_not_echo_the_value() {
    let e = err("[s]\nsecret = abc${s3cr3t-tail\n");
    let shown = e.to_string();
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("never closed"), "{shown}");
    let shown = err("[s]\nx = ${a:b:c}\n").to_string();
    assert!(shown.contains("${a:b:c}"), "{shown}");
}

#[test]
fn reference_loops_stop() {
    let e = err("[s]\na = ${b}\nb = ${a}\n");
    assert!(matches!(e.kind, IniErrorKind::TooDeep { .. }));
}

#[test]
fn structural_errors_carry_lines() {
    let e = err("x = 1\n");
    assert_eq!((e.line, e.kind), (1, IniErrorKind::MissingSectionHeader));
    let e = err("[s]\nx = 1\n[s]\n");
    assert_eq!(e.line, 3);
    assert!(matches!(e.kind, IniErrorKind::DuplicateSection { .. }));
    let e = err("[s]\nx = 1\nx = 2\n");
    assert_eq!(e.line, 3);
    assert!(matches!(e.kind, IniErrorKind::DuplicateKey { .. }));
    assert_eq!(err("[s]\n= 1\n").kind, IniErrorKind::EmptyKey);
    assert_eq!(err("[s]\nsecret\n").kind, IniErrorKind::NotAnOption);
    assert!(matches!(
        err("[DEFAULT]\nextends = a.ini\n").kind,
        IniErrorKind::Include { .. }
    ));
}

#[test]
fn repeated_default_section_is_allowed() {
    let ini = ok("[DEFAULT]\na = 1\n[s]\n[DEFAULT]\nb = 2\n");
    assert_eq!(ini.keys("DEFAULT").collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(ini.sections().collect::<Vec<_>>(), ["s"]);
}

#[test]
fn crlf_and_bom_are_accepted() {
    let ini = ok("\u{feff}[s]\r\nx = 1\r\nl =\r\n  a\r\n  b\r\n");
    assert_eq!(ini.get("s", "x"), Some(Value::Int(1)));
    assert_eq!(ini.get_strings("s", "l").unwrap_or_default(), ["a", "b"]);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "[",
        "]",
        "[]",
        "[[",
        "\u{0}",
        "$",
        "[s]\nx=${",
        "[s]\nx=$",
        "[s]\n x\n",
    ] {
        let _ = parse(text);
    }
}
