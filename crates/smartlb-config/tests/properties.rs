//! Property tests: durations round-trip, and no input makes the parser panic.

use std::time::Duration;

use proptest::prelude::*;
use smartlb_config::{BackendAddress, format_duration, parse_duration, parse_str};

const FULL: &str = include_str!("fixtures/full.toml");

fn env(name: &str) -> Option<String> {
    (name == "SMARTLB_ADMIN_TOKEN").then(|| "token".to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn durations_round_trip(secs in 0u64..=10_000_000_000_000, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text), Ok(d), "{}", text);
    }

    #[test]
    fn whole_unit_durations_parse(n in 0u64..1_000_000, unit in prop::sample::select(vec![
        ("ns", 1u128), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ])) {
        let parsed = parse_duration(&format!("{n}{}", unit.0)).unwrap();
        prop_assert_eq!(parsed.as_nanos(), u128::from(n) * unit.1);
    }

    #[test]
    fn duration_parser_never_panics(s in "\\PC{0,24}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_like_text_never_panics(s in "[0-9.µ a-z-]{0,16}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn address_parser_never_panics_and_round_trips(s in "(https?://)?[a-z0-9.:\\[\\]/_-]{0,24}") {
        if let Ok(a) = s.parse::<BackendAddress>() {
            prop_assert_eq!(a.to_string().parse::<BackendAddress>(), Ok(a));
        }
    }

    #[test]
    fn garbage_never_panics(s in "\\PC{0,200}") {
        let _ = parse_str(&s, "garbage.toml", &env);
    }

    #[test]
    fn toml_like_garbage_never_panics(s in "[\\[\\]a-z_.=\"{},0-9 \\n${}:-]{0,300}") {
        let _ = parse_str(&s, "garbage.toml", &env);
    }

    #[test]
    fn mutated_full_file_never_panics(
        edits in prop::collection::vec((0usize..4000, prop::sample::select(vec![
            "", "\"", "[", "]", "{", "}", "=", "0", "-1", "x", "\n", "${", "é", "[[upstream]]\n", ".",
        ])), 1..6),
        cut in 0usize..4,
    ) {
        let mut text = FULL.to_owned();
        for (at, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            // Remove up to `cut` characters, then insert.
            let end = text[at..].char_indices().nth(cut).map_or(text.len(), |(i, _)| at + i);
            text.replace_range(at..end, insert);
        }
        let _ = parse_str(&text, "mutated.toml", &env);
    }
}
