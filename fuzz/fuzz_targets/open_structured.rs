//! Structure-aware fuzzing of opening a sealed value. Each input describes a
//! valid sealing under the test identity, X25519 or post-quantum
//! (`mlkem768x25519`), (scope, value size, other recipients) and mutations
//! of its parts: the binding header and its
//! padding, the age stanzas and their arguments, how the header is written,
//! the STREAM chunks, and the base64 around it all. The ciphertext is then
//! written with a known file key, so the header MAC and the chunk tags stay
//! valid unless a mutation says otherwise: the parser's refusals past the
//! MAC are what is exercised.
//!
//! Properties: opening never panics; it costs at most one unwrap; a
//! value that opens was authenticated exactly as written, has a binding that
//! parses, a value no longer than `MAX_VALUE_LEN`, and the same scope in the
//! age header; a refusal never quotes the value; and an unmutated ciphertext
//! of a well-formed plaintext always opens (no false refusals).
#![no_main]

use coffer_format::envelope::{
    self, Binding, MAX_PLAINTEXT_LEN, MAX_SEALED_LEN, MAX_VALUE_LEN, OpenError, Scope, padded_len,
    parse_plaintext,
};
use coffer_format::key::unwraps_on_this_thread;
use coffer_fuzz::{
    BodyStyle, CHUNK, ChunkModel, FILE_KEY, HeaderStyle, MacStyle, StanzaModel, b64, honest_chunks,
    other_keys, pq_stanza, pq_test_key, raw_public, test_key, test_ring_with_pq, write_header,
    write_payload, x25519_stanza,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// A marker at the start of every value: no refusal may contain it.
const MARKER: &[u8] = b"FUZZ-SECRET-";

#[derive(Arbitrary, Debug)]
struct Input {
    scope: ScopeWord,
    value: ValueSpec,
    /// Other recipients before the test key (at most 3, mod 4). With bit 6
    /// set, the value is sealed to the post-quantum test key instead of
    /// the X25519 one (a bit of an existing field, so that the committed
    /// seeds still decode to what they were found as).
    others_before: u8,
    /// Other recipients after it.
    others_after: u8,
    no_grease: bool,
    plain_ops: Vec<PlainOp>,
    pad: PadChoice,
    separator: Separator,
    stanza_ops: Vec<StanzaOp>,
    header: Vec<HeaderOp>,
    payload_ops: Vec<PayloadOp>,
    encoding: Encoding,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ScopeWord {
    Strict,
    Namespace,
    Cluster,
    Unknown,
    Capitalised,
}

impl ScopeWord {
    fn word(self) -> &'static str {
        match self {
            ScopeWord::Strict => "strict",
            ScopeWord::Namespace => "namespace",
            ScopeWord::Cluster => "cluster",
            ScopeWord::Unknown => "global",
            ScopeWord::Capitalised => "Strict",
        }
    }
    fn scope(self) -> Scope {
        match self {
            ScopeWord::Namespace => Scope::Namespace,
            ScopeWord::Cluster => Scope::Cluster,
            _ => Scope::Strict,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ValueSpec {
    Bytes(Vec<u8>),
    /// `len` mod 5,000 bytes: the padding buckets up to 8 KiB (larger ones
    /// come from `Chunks` and `Large`; every byte costs run time).
    Filled {
        len: u16,
        byte: u8,
    },
    /// A plaintext of exactly `k` chunks (1 to 3) before padding, plus or
    /// minus a few bytes; only when `gate` is 0 mod 4, else 1,000 bytes.
    Chunks {
        gate: u8,
        k: u8,
        delta: i8,
    },
    /// Values near the caps, a hundred times slower to seal and open than
    /// the rest: only when `gate` is 0 mod 16, else 100 bytes.
    Large {
        gate: u8,
        size: Large,
    },
}

#[derive(Arbitrary, Debug)]
enum Large {
    /// `kib` KiB (mod 1090) plus `extra` bytes (mod 1024): up to past the
    /// plaintext cap.
    Sized {
        kib: u16,
        extra: u16,
    },
    /// Up to 17 chunks.
    Chunks {
        k: u8,
        delta: i8,
    },
    ValueCap {
        delta: i16,
    },
    PlaintextCap {
        delta: i16,
    },
}

/// A header line's field name.
#[derive(Arbitrary, Debug, Clone)]
enum Field {
    Scope,
    Namespace,
    Name,
    Key,
    Pad,
    Other(String),
}

impl Field {
    fn name(&self) -> &str {
        match self {
            Field::Scope => "scope",
            Field::Namespace => "namespace",
            Field::Name => "name",
            Field::Key => "key",
            Field::Pad => "pad",
            Field::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Word {
    Shop,
    Db,
    Password,
    Dev,
    Empty,
    Longest,
    TooLong,
    Upper,
    Slash,
    Scope(ScopeWord),
    Raw(String),
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Shop => "shop".into(),
            Word::Db => "db".into(),
            Word::Password => "password".into(),
            Word::Dev => "dev".into(),
            Word::Empty => String::new(),
            Word::Longest => "a".repeat(253),
            Word::TooLong => "a".repeat(254),
            Word::Upper => "Shop".into(),
            Word::Slash => "shop/db".into(),
            Word::Scope(s) => s.word().into(),
            Word::Raw(s) => s.clone(),
        }
    }
}

/// Edits of the binding header's lines (before the pad line).
#[derive(Arbitrary, Debug)]
enum PlainOp {
    Version(Version),
    Set { line: u8, field: Field, value: Word },
    Insert { line: u8, field: Field, value: Word },
    Drop { line: u8 },
    Dup { line: u8 },
    Swap { a: u8, b: u8 },
    Raw { line: u8, bytes: Vec<u8> },
    SpaceBeforeColon { line: u8 },
    ValuePrefix(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Version {
    V2,
    Bare,
    Empty,
    Trailing,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum PadChoice {
    /// Dots up to the size bucket, as the sealer writes.
    Bucket,
    Dots(u16),
    /// The bucket, with one dot replaced.
    NotDot {
        at: u16,
        byte: u8,
    },
    NoPadLine,
    /// The bucket, plus or minus some dots.
    Off(i8),
}

#[derive(Arbitrary, Debug)]
enum Separator {
    Blank,
    None,
    Crlf,
    SpaceLine,
    Two,
}

#[derive(Arbitrary, Debug)]
enum StanzaOp {
    Swap {
        a: u8,
        b: u8,
    },
    Dup {
        at: u8,
        times: u8,
    },
    Drop {
        at: u8,
    },
    Move {
        from: u8,
        to: u8,
    },
    Tag {
        at: u8,
        tag: Tag,
    },
    SetArg {
        at: u8,
        arg: u8,
        value: Arg,
    },
    PushArg {
        at: u8,
        value: Arg,
    },
    PopArg {
        at: u8,
    },
    Body {
        at: u8,
        body: Vec<u8>,
    },
    FlipBody {
        at: u8,
        pos: u8,
        xor: u8,
    },
    InsertKid {
        at: u8,
        id: Arg,
        scope: ScopeWord,
    },
    InsertX25519 {
        at: u8,
        to: Recipient,
    },
    Insert {
        at: u8,
        tag: Tag,
        args: Vec<Arg>,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Recipient {
    /// The test key, the file key wrapped correctly.
    TestKey,
    /// The test key, another file key.
    TestKeyOtherFileKey,
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Tag {
    X25519,
    Kid,
    Lower,
    Scrypt,
    Grease(String),
}

impl Tag {
    fn text(&self) -> String {
        match self {
            Tag::X25519 => "X25519".into(),
            Tag::Kid => "coffer-kid".into(),
            Tag::Lower => "x25519".into(),
            Tag::Scrypt => "scrypt".into(),
            Tag::Grease(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Arg {
    TestId,
    OtherId(u8),
    ShortId,
    UpperId,
    IdPrefix(u8),
    Scope(ScopeWord),
    TestShare,
    ZeroShare,
    NonCanonicalShare,
    Empty,
    Raw(String),
}

impl Arg {
    fn text(&self, test_share: &str) -> String {
        match self {
            Arg::TestId => test_key().id().to_string(),
            Arg::OtherId(i) => other(*i).id().to_string(),
            Arg::ShortId => test_key().id().short(),
            Arg::UpperId => test_key().id().to_string().to_uppercase(),
            Arg::IdPrefix(n) => test_key().id().to_string()[..(*n as usize % 64)].to_string(),
            Arg::Scope(s) => s.word().into(),
            Arg::TestShare => test_share.into(),
            Arg::ZeroShare => "A".repeat(43),
            Arg::NonCanonicalShare => {
                let mut s = test_share.to_string();
                let last = s.pop().unwrap_or('A');
                s.push(if last == 'B' { 'C' } else { 'B' });
                s
            }
            Arg::Empty => String::new(),
            Arg::Raw(s) => s.clone(),
        }
    }
}

/// How the header is written.
#[derive(Arbitrary, Debug)]
enum HeaderOp {
    Version(Vec<u8>),
    NoFinalEmptyLine,
    Width(u8),
    PaddedBody,
    Crlf,
    DoubleSpace,
    BeforeMac(Vec<u8>),
    MacFlipped { at: u8, xor: u8 },
    MacPadded,
    MacRaw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum PayloadOp {
    DropLast,
    DropFirst,
    Dup {
        at: u8,
    },
    Swap {
        a: u8,
        b: u8,
    },
    AppendEmptyLast,
    Append {
        len: u16,
        last: bool,
    },
    ToggleLast {
        at: u8,
    },
    Counter {
        at: u8,
        delta: u8,
    },
    /// Split a chunk in two at `pos`: a short chunk that is not the last.
    Split {
        at: u8,
        pos: u16,
    },
    NonceFlip {
        at: u8,
        xor: u8,
    },
    NonceShort(u8),
    FlipByte {
        pos: u32,
        xor: u8,
    },
    Truncate(u32),
    AppendBytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Encoding {
    Standard,
    NoPad,
    Newline(u16),
    TrailingSpace,
    UrlSafe,
    NonCanonicalBits,
    Truncate(u16),
}

fn other(i: u8) -> &'static coffer_format::SecretKey {
    let o = other_keys();
    &o[i as usize % o.len()]
}

fn idx(i: u8, len: usize) -> Option<usize> {
    (len > 0).then(|| i as usize % len)
}

/// The binding header lines (without the pad line) for a scope.
fn header_lines(scope: ScopeWord) -> Vec<Vec<u8>> {
    let mut l = vec![
        b"coffer.dev/v1".to_vec(),
        format!("scope: {}", scope.word()).into_bytes(),
    ];
    let s = scope.scope();
    if s != Scope::Cluster {
        l.push(b"namespace: shop".to_vec());
    }
    if s == Scope::Strict {
        l.push(b"name: db".to_vec());
    }
    l.push(b"key: password".to_vec());
    l
}

fn value_len(v: &ValueSpec, head_len: usize) -> usize {
    // Length of the bare plaintext besides the value: lines, "pad: \n\n".
    let overhead = head_len + "pad: \n\n".len();
    let chunks = |k: usize, delta: i8| {
        (k * CHUNK)
            .saturating_sub(overhead)
            .saturating_add_signed(delta as isize)
    };
    match v {
        ValueSpec::Bytes(b) => b.len(),
        ValueSpec::Filled { len, .. } => *len as usize % 5_000,
        ValueSpec::Chunks { gate, .. } if gate % 4 != 0 => 1000,
        ValueSpec::Chunks { k, delta, .. } => chunks(1 + *k as usize % 3, *delta),
        ValueSpec::Large { gate, .. } if gate % 16 != 0 => 100,
        ValueSpec::Large { size, .. } => match size {
            Large::Sized { kib, extra } => (*kib as usize % 1090) * 1024 + *extra as usize % 1024,
            Large::Chunks { k, delta } => chunks(1 + *k as usize % 17, *delta),
            Large::ValueCap { delta } => MAX_VALUE_LEN.saturating_add_signed(*delta as isize),
            Large::PlaintextCap { delta } => MAX_PLAINTEXT_LEN
                .saturating_sub(overhead)
                .saturating_add_signed(*delta as isize),
        },
    }
}

fn value_bytes(v: &ValueSpec, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MARKER[..MARKER.len().min(len)]);
    match v {
        ValueSpec::Bytes(b) => {
            out.clear();
            out.extend_from_slice(b);
        }
        ValueSpec::Filled { byte, .. } => out.resize(len, *byte),
        _ => out.resize(len, b'v'),
    }
    out
}

/// Builds the plaintext: the template's binding header with the edits, the
/// pad line, the separator and the value.
fn build_plaintext(input: &Input) -> Vec<u8> {
    let mut lines = header_lines(input.scope);
    let head_len: usize = lines.iter().map(|l| l.len() + 1).sum();
    let len = value_len(&input.value, head_len);
    let mut value = value_bytes(&input.value, len);
    for op in &input.plain_ops {
        let n = lines.len();
        match op {
            PlainOp::Version(v) => {
                let text: Vec<u8> = match v {
                    Version::V2 => b"coffer.dev/v2".to_vec(),
                    Version::Bare => b"coffer.dev/".to_vec(),
                    Version::Empty => Vec::new(),
                    Version::Trailing => b"coffer.dev/v1 ".to_vec(),
                    Version::Raw(b) => b.clone(),
                };
                if n > 0 {
                    lines[0] = text;
                } else {
                    lines.push(text);
                }
            }
            PlainOp::Set { line, field, value } => {
                if let Some(i) = idx(*line, n) {
                    lines[i] = format!("{}: {}", field.name(), value.text()).into_bytes();
                }
            }
            PlainOp::Insert { line, field, value } => {
                let i = *line as usize % (n + 1);
                lines.insert(
                    i,
                    format!("{}: {}", field.name(), value.text()).into_bytes(),
                );
            }
            PlainOp::Drop { line } => {
                if let Some(i) = idx(*line, n) {
                    lines.remove(i);
                }
            }
            PlainOp::Dup { line } => {
                if let Some(i) = idx(*line, n) {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
            }
            PlainOp::Swap { a, b } => {
                if let (Some(a), Some(b)) = (idx(*a, n), idx(*b, n)) {
                    lines.swap(a, b);
                }
            }
            PlainOp::Raw { line, bytes } => {
                let i = *line as usize % (n + 1);
                lines.insert(i, bytes.clone());
            }
            PlainOp::SpaceBeforeColon { line } => {
                if let Some(i) = idx(*line, n)
                    && let Some(p) = lines[i].iter().position(|&b| b == b':')
                {
                    lines[i].insert(p, b' ');
                }
            }
            PlainOp::ValuePrefix(b) => {
                let k = b.len().min(value.len());
                value[..k].copy_from_slice(&b[..k]);
            }
        }
    }
    let mut head = Vec::new();
    for l in &lines {
        head.extend_from_slice(l);
        head.push(b'\n');
    }
    let sep: &[u8] = match input.separator {
        Separator::Blank => b"\n\n",
        Separator::None => b"\n",
        Separator::Crlf => b"\r\n\r\n",
        Separator::SpaceLine => b"\n \n",
        Separator::Two => b"\n\n\n",
    };
    let bare = head.len() + "pad: ".len() + sep.len() + value.len();
    let bucket = padded_len(bare) - bare;
    let mut pad = b"pad: ".to_vec();
    match &input.pad {
        PadChoice::Bucket => pad.resize(pad.len() + bucket, b'.'),
        PadChoice::Dots(n) => pad.resize(pad.len() + *n as usize, b'.'),
        PadChoice::NotDot { at, byte } => {
            pad.resize(pad.len() + bucket, b'.');
            if bucket > 0 {
                let i = 5 + *at as usize % bucket;
                pad[i] = *byte;
            }
        }
        PadChoice::NoPadLine => pad.clear(),
        PadChoice::Off(d) => {
            let n = bucket.saturating_add_signed(*d as isize);
            pad.resize(pad.len() + n, b'.');
        }
    }
    let mut plain = head;
    plain.extend_from_slice(&pad);
    if pad.is_empty() {
        // No pad line: the separator follows the last header line.
        plain.extend_from_slice(&sep[1..]);
    } else {
        plain.extend_from_slice(sep);
    }
    plain.extend_from_slice(&value);
    plain
}

/// The stanzas an honest sealer writes (one X25519 and one coffer-kid per
/// recipient, then grease), and the test key's X25519 share.
fn honest_stanzas(input: &Input) -> (Vec<StanzaModel>, String) {
    let before = input.others_before as usize % 4;
    let after = input.others_after as usize % 4;
    let me = if input.others_before & 0x40 != 0 {
        pq_test_key()
    } else {
        test_key()
    };
    let mut to: Vec<&coffer_format::SecretKey> = Vec::new();
    for i in 0..before {
        to.push(&other_keys()[i % 3]);
    }
    to.push(me);
    for i in 0..after {
        let k = &other_keys()[(before + i) % 3];
        if !to.iter().any(|t| t.id() == k.id()) {
            to.push(k);
        }
    }
    let mut stanzas = Vec::new();
    for k in to {
        let s = if k.id() == test_key().id() {
            precomputed().test.clone()
        } else if k.id() == pq_test_key().id() {
            pq_stanza().clone()
        } else {
            let i = other_keys()
                .iter()
                .position(|o| o.id() == k.id())
                .unwrap_or(0);
            precomputed().others[i].clone()
        };
        stanzas.push(s);
        stanzas.push(StanzaModel {
            tag: "coffer-kid".into(),
            args: vec![k.id().to_string(), input.scope.word().into()],
            body: Vec::new(),
        });
    }
    if !input.no_grease {
        stanzas.push(StanzaModel {
            tag: "c-grease".into(),
            args: vec!["x".into()],
            body: b"grease".to_vec(),
        });
    }
    let test_share = precomputed().test.args[0].clone();
    (stanzas, test_share)
}

/// X25519 stanzas wrapping the file key, computed once: two scalar
/// multiplications each, which would otherwise dominate every run.
struct Precomputed {
    /// To the test key.
    test: StanzaModel,
    /// To the test key again, another ephemeral share.
    test_again: StanzaModel,
    /// To the test key, wrapping another file key.
    test_other_file_key: StanzaModel,
    /// To each other key.
    others: Vec<StanzaModel>,
}

fn precomputed() -> &'static Precomputed {
    static P: std::sync::OnceLock<Precomputed> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let t = raw_public(test_key());
        Precomputed {
            test: x25519_stanza(&t, [1; 32], &FILE_KEY),
            test_again: x25519_stanza(&t, [0x77; 32], &FILE_KEY),
            test_other_file_key: x25519_stanza(&t, [0x78; 32], &[0x11; 16]),
            others: other_keys()
                .iter()
                .enumerate()
                .map(|(i, k)| x25519_stanza(&raw_public(k), [i as u8 + 2; 32], &FILE_KEY))
                .collect(),
        }
    })
}

fn apply_stanza_ops(stanzas: &mut Vec<StanzaModel>, ops: &[StanzaOp], test_share: &str) {
    for op in ops {
        let n = stanzas.len();
        match op {
            StanzaOp::Swap { a, b } => {
                if let (Some(a), Some(b)) = (idx(*a, n), idx(*b, n)) {
                    stanzas.swap(a, b);
                }
            }
            StanzaOp::Dup { at, times } => {
                if let Some(i) = idx(*at, n) {
                    for _ in 0..(*times % 80) {
                        let s = stanzas[i].clone();
                        stanzas.insert(i, s);
                    }
                }
            }
            StanzaOp::Drop { at } => {
                if let Some(i) = idx(*at, n) {
                    stanzas.remove(i);
                }
            }
            StanzaOp::Move { from, to } => {
                if let (Some(f), Some(t)) = (idx(*from, n), idx(*to, n)) {
                    let s = stanzas.remove(f);
                    stanzas.insert(t, s);
                }
            }
            StanzaOp::Tag { at, tag } => {
                if let Some(i) = idx(*at, n) {
                    stanzas[i].tag = tag.text();
                }
            }
            StanzaOp::SetArg { at, arg, value } => {
                if let Some(i) = idx(*at, n)
                    && let Some(j) = idx(*arg, stanzas[i].args.len())
                {
                    stanzas[i].args[j] = value.text(test_share);
                }
            }
            StanzaOp::PushArg { at, value } => {
                if let Some(i) = idx(*at, n) {
                    stanzas[i].args.push(value.text(test_share));
                }
            }
            StanzaOp::PopArg { at } => {
                if let Some(i) = idx(*at, n) {
                    stanzas[i].args.pop();
                }
            }
            StanzaOp::Body { at, body } => {
                if let Some(i) = idx(*at, n) {
                    stanzas[i].body = body.clone();
                }
            }
            StanzaOp::FlipBody { at, pos, xor } => {
                if let Some(i) = idx(*at, n)
                    && let Some(p) = idx(*pos, stanzas[i].body.len())
                {
                    stanzas[i].body[p] ^= xor | 1;
                }
            }
            StanzaOp::InsertKid { at, id, scope } => {
                let i = *at as usize % (n + 1);
                stanzas.insert(
                    i,
                    StanzaModel {
                        tag: "coffer-kid".into(),
                        args: vec![id.text(test_share), scope.word().into()],
                        body: Vec::new(),
                    },
                );
            }
            StanzaOp::InsertX25519 { at, to } => {
                let i = *at as usize % (n + 1);
                let p = precomputed();
                let s = match to {
                    Recipient::TestKey => &p.test_again,
                    Recipient::TestKeyOtherFileKey => &p.test_other_file_key,
                    Recipient::Other(k) => &p.others[*k as usize % p.others.len()],
                };
                stanzas.insert(i, s.clone());
            }
            StanzaOp::Insert {
                at,
                tag,
                args,
                body,
            } => {
                let i = *at as usize % (n + 1);
                stanzas.insert(
                    i,
                    StanzaModel {
                        tag: tag.text(),
                        args: args.iter().map(|a| a.text(test_share)).collect(),
                        body: body.clone(),
                    },
                );
            }
        }
    }
}

fn header_style(ops: &[HeaderOp]) -> HeaderStyle {
    let mut st = HeaderStyle::default();
    for op in ops {
        match op {
            HeaderOp::Version(v) => st.version_line = Some(v.clone()),
            HeaderOp::NoFinalEmptyLine => st.body = BodyStyle::NoFinalEmptyLine,
            HeaderOp::Width(w) => st.body = BodyStyle::Width(*w as usize),
            HeaderOp::PaddedBody => st.body = BodyStyle::Padded,
            HeaderOp::Crlf => st.crlf = true,
            HeaderOp::DoubleSpace => st.double_space = true,
            HeaderOp::BeforeMac(b) => st.before_mac = b.clone(),
            HeaderOp::MacFlipped { at, xor } => st.mac = MacStyle::Flipped(*at as usize, *xor),
            HeaderOp::MacPadded => st.mac = MacStyle::Padded,
            HeaderOp::MacRaw(b) => st.mac = MacStyle::Raw(b.clone()),
        }
    }
    st
}

/// The payload bytes, and the plaintext its chunks carry in order: whoever
/// knows the file key can drop, add or re-flag chunks and still write a
/// valid stream, so that is what an opened value must match.
fn build_payload(plain: &[u8], ops: &[PayloadOp]) -> (Vec<u8>, Vec<u8>) {
    let mut chunks: Vec<ChunkModel> = honest_chunks(plain);
    let payload_nonce = [0x33u8; 16];
    let mut nonce = payload_nonce.to_vec();
    let mut raw: Vec<&PayloadOp> = Vec::new();
    for op in ops {
        let n = chunks.len();
        match op {
            PayloadOp::DropLast => {
                chunks.pop();
            }
            PayloadOp::DropFirst => {
                if n > 0 {
                    chunks.remove(0);
                }
            }
            PayloadOp::Dup { at } => {
                if let Some(i) = idx(*at, n) {
                    let c = chunks[i].clone();
                    chunks.insert(i, c);
                }
            }
            PayloadOp::Swap { a, b } => {
                if let (Some(a), Some(b)) = (idx(*a, n), idx(*b, n)) {
                    chunks.swap(a, b);
                }
            }
            PayloadOp::AppendEmptyLast => {
                if let Some(l) = chunks.last_mut() {
                    l.last = false;
                }
                chunks.push(ChunkModel {
                    plain: Vec::new(),
                    counter: n as u64,
                    last: true,
                });
            }
            PayloadOp::Append { len, last } => chunks.push(ChunkModel {
                plain: vec![b'x'; (*len as usize).min(CHUNK)],
                counter: n as u64,
                last: *last,
            }),
            PayloadOp::ToggleLast { at } => {
                if let Some(i) = idx(*at, n) {
                    chunks[i].last = !chunks[i].last;
                }
            }
            PayloadOp::Counter { at, delta } => {
                if let Some(i) = idx(*at, n) {
                    chunks[i].counter = chunks[i].counter.wrapping_add(*delta as u64 | 1);
                }
            }
            PayloadOp::Split { at, pos } => {
                if let Some(i) = idx(*at, n)
                    && !chunks[i].plain.is_empty()
                {
                    let p = *pos as usize % chunks[i].plain.len();
                    let tail = chunks[i].plain.split_off(p);
                    let c = ChunkModel {
                        plain: tail,
                        counter: chunks[i].counter + 1,
                        last: chunks[i].last,
                    };
                    chunks[i].last = false;
                    chunks.insert(i + 1, c);
                }
            }
            PayloadOp::NonceFlip { at, xor } => {
                let i = *at as usize % nonce.len().max(1);
                if let Some(b) = nonce.get_mut(i) {
                    *b ^= xor | 1;
                }
            }
            PayloadOp::NonceShort(n) => nonce.truncate(*n as usize % 16),
            other => raw.push(other),
        }
    }
    let mut payload = write_payload(&nonce, &payload_nonce, &chunks, &FILE_KEY);
    // How many whole chunks the payload still holds: a truncation that cuts
    // exactly at a chunk boundary leaves a shorter stream of authentic
    // chunks, which opens if its new last chunk carries the last flag (a
    // duplicated final chunk cut back to one, say). What may open is what
    // those chunks carry.
    let mut whole = chunks.len();
    for op in raw {
        match op {
            PayloadOp::FlipByte { pos, xor } => {
                if let Some(i) = idx32(*pos, payload.len()) {
                    payload[i] ^= xor | 1;
                }
            }
            PayloadOp::Truncate(n) => {
                let keep = *n as usize % (payload.len() + 1);
                payload.truncate(keep);
                let mut end = nonce.len();
                whole = chunks[..whole]
                    .iter()
                    .take_while(|c| {
                        end += c.plain.len() + 16;
                        end <= keep
                    })
                    .count();
            }
            PayloadOp::AppendBytes(b) => payload.extend_from_slice(b),
            _ => {}
        }
    }
    let carried: Vec<u8> = chunks[..whole]
        .iter()
        .flat_map(|c| c.plain.iter().copied())
        .collect();
    (payload, carried)
}

fn idx32(i: u32, len: usize) -> Option<usize> {
    (len > 0).then(|| i as usize % len)
}

fn encode(bytes: &[u8], e: &Encoding) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};
    match e {
        Encoding::Standard => b64(bytes),
        Encoding::NoPad => STANDARD_NO_PAD.encode(bytes),
        Encoding::Newline(at) => {
            let mut s = b64(bytes);
            let i = *at as usize % (s.len() + 1);
            s.insert(i, '\n');
            s
        }
        Encoding::TrailingSpace => b64(bytes) + " ",
        Encoding::UrlSafe => URL_SAFE.encode(bytes),
        Encoding::NonCanonicalBits => {
            let mut s = b64(bytes);
            let body = s.trim_end_matches('=').len();
            if body > 0 && s.len() > body {
                // The last character before padding carries unused bits.
                let c = s.as_bytes()[body - 1];
                let flipped = if c == b'A' { 'B' } else { 'A' };
                s.replace_range(body - 1..body, &flipped.to_string());
            }
            s
        }
        Encoding::Truncate(n) => {
            let mut s = b64(bytes);
            s.truncate(*n as usize % (s.len() + 1));
            s
        }
    }
}

fuzz_target!(|input: Input| {
    let plain = build_plaintext(&input);
    // Far beyond the caps there is nothing new to learn and much to encrypt.
    if plain.len() > MAX_PLAINTEXT_LEN + 2 * CHUNK {
        return;
    }
    let (mut stanzas, test_share) = honest_stanzas(&input);
    apply_stanza_ops(&mut stanzas, &input.stanza_ops, &test_share);
    let style = header_style(&input.header);
    let mut bytes = write_header(&stanzas, &style, &FILE_KEY);
    let (payload, carried) = build_payload(&plain, &input.payload_ops);
    bytes.extend(payload);
    let sealed = encode(&bytes, &input.encoding);

    // `open_unchecked` and `inspect` are `decode` and then these; decoding
    // once halves the run time.
    let ring = test_ring_with_pq();
    let before = unwraps_on_this_thread();
    let decoded = envelope::decode(&sealed);
    let opened = match &decoded {
        Ok(bytes) => envelope::open_unchecked_bytes(bytes, ring),
        Err(e) => Err(match e {
            OpenError::TooLarge { len } => OpenError::TooLarge { len: *len },
            _ => OpenError::Base64,
        }),
    };
    let unwraps = unwraps_on_this_thread() - before;
    assert!(unwraps <= 1, "opening cost {unwraps} unwraps");
    let inspected = decoded
        .as_ref()
        .ok()
        .map(|bytes| envelope::inspect_bytes(bytes));

    let clean = input.stanza_ops.is_empty()
        && input.header.is_empty()
        && input.payload_ops.is_empty()
        && matches!(input.encoding, Encoding::Standard);
    let parsed: Option<(Binding, &[u8])> = parse_plaintext(&carried).ok();

    match &opened {
        Ok(o) => {
            // Only an authenticated ciphertext opens: the plaintext is ours.
            let (binding, value) = parsed.expect("a value opened whose plaintext does not parse");
            assert_eq!(o.binding, binding);
            assert_eq!(o.value.as_slice(), value);
            assert!(
                o.value.len() <= MAX_VALUE_LEN,
                "opened a value of {} bytes, longer than a Secret holds",
                o.value.len()
            );
            assert!(carried.len() <= MAX_PLAINTEXT_LEN);
            assert!(
                o.key_id == test_key().id() || o.key_id == pq_test_key().id(),
                "opened with a key the ring does not hold"
            );
            let env = inspected
                .expect("a value that opens decodes")
                .expect("a value that opens inspects");
            assert_eq!(env.scope, o.binding.scope);
            assert!(env.key_ids.contains(&o.key_id));
            assert_eq!(
                env.size_bucket(),
                carried.len(),
                "size bucket of an opened value"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.as_bytes().windows(MARKER.len()).any(|w| w == MARKER),
                "a refusal quotes the value: {msg}"
            );
            if clean
                && sealed.len() <= MAX_SEALED_LEN
                && plain.len() <= MAX_PLAINTEXT_LEN
                && let Some((binding, _)) = &parsed
                && binding.scope == input.scope.scope()
                && !matches!(input.scope, ScopeWord::Unknown | ScopeWord::Capitalised)
            {
                panic!("a well-formed sealing was refused: {e:?}");
            }
        }
    }
});
