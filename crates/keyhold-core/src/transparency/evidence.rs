//! Evidence files: signed notes that contradict each other (or anything else
//! a client wants to show a third party), with the reason, in one plain-text
//! file (spec: `transparency.md`, "Evidence").

use super::KtError;
use super::witness::parse_decimal;

const HEADER: &[u8] = b"keyhold key transparency evidence v1\n";

/// A parsed evidence file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Why the notes were kept (one line).
    pub reason: String,
    /// The notes, verbatim.
    pub notes: Vec<Vec<u8>>,
}

/// An evidence file:
///
/// ```text
/// keyhold key transparency evidence v1
/// reason <reason>
/// notes <count>
/// note <byte length>
/// <note bytes, verbatim>
/// note <byte length>
/// ...
/// ```
///
/// Numbers are canonical decimals. Each note's bytes are followed by one
/// newline (a signed note's own final newline is part of its bytes). Control characters in `reason`
/// (newlines included) are replaced by spaces so it stays one line.
pub fn evidence(reason: &str, notes: &[&[u8]]) -> Vec<u8> {
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out = HEADER.to_vec();
    out.extend_from_slice(format!("reason {reason}\nnotes {}\n", notes.len()).as_bytes());
    for note in notes {
        out.extend_from_slice(format!("note {}\n", note.len()).as_bytes());
        out.extend_from_slice(note);
        out.push(b'\n');
    }
    out
}

/// Parses an [`evidence`] file, strictly (the encoding is canonical).
pub fn parse_evidence(file: &[u8]) -> Result<Evidence, KtError> {
    let bad = KtError::Malformed("evidence file");
    let mut rest = file.strip_prefix(HEADER).ok_or(bad.clone())?;
    let line_end = rest.iter().position(|b| *b == b'\n').ok_or(bad.clone())?;
    let (line, tail) = rest.split_at(line_end);
    let reason = line.strip_prefix(b"reason ").ok_or(bad.clone())?;
    let reason = core::str::from_utf8(reason).map_err(|_| bad.clone())?;
    if reason.chars().any(char::is_control) {
        return Err(bad);
    }
    rest = tail.get(1..).unwrap_or_default();
    let line_end = rest.iter().position(|b| *b == b'\n').ok_or(bad.clone())?;
    let (line, tail) = rest.split_at(line_end);
    let count = line.strip_prefix(b"notes ").and_then(parse_decimal).ok_or(bad.clone())?;
    rest = tail.get(1..).unwrap_or_default();
    let mut notes = Vec::new();
    while !rest.is_empty() {
        let line_end = rest.iter().position(|b| *b == b'\n').ok_or(bad.clone())?;
        let (line, tail) = rest.split_at(line_end);
        let len = line.strip_prefix(b"note ").and_then(parse_decimal).ok_or(bad.clone())?;
        let len = usize::try_from(len).map_err(|_| bad.clone())?;
        let tail = tail.get(1..).unwrap_or_default();
        let note = tail.get(..len).ok_or(bad.clone())?;
        if tail.get(len) != Some(&b'\n') {
            return Err(bad);
        }
        notes.push(note.to_vec());
        rest = tail.get(len.saturating_add(1)..).unwrap_or_default();
    }
    if u64::try_from(notes.len()) != Ok(count) {
        return Err(bad);
    }
    Ok(Evidence { reason: reason.to_owned(), notes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn evidence_round_trips_and_is_strict() {
        let notes: [&[u8]; 3] = [b"a\n\n\xe2\x80\x94 x y\n", b"", b"note 3\n"];
        let file = evidence("split\nview", &notes);
        let parsed = parse_evidence(&file).unwrap();
        assert_eq!(parsed.reason, "split view");
        assert_eq!(parsed.notes, notes.iter().map(|n| n.to_vec()).collect::<Vec<_>>());
        assert_eq!(parse_evidence(&evidence("r", &[])).unwrap().notes.len(), 0);
        for cut in 0..file.len() {
            assert!(parse_evidence(&file[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = file.clone();
        extra.push(b'x');
        assert!(parse_evidence(&extra).is_err());
        assert!(parse_evidence(b"keyhold key transparency evidence v1\nreason r\nnotes 1\nnote 01\nx\n").is_err());
        assert!(parse_evidence(b"keyhold key transparency evidence v1\nreason r\nnotes 1\nnote 1\nx\n").is_ok());
    }
}
