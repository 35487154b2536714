//! Allocations per request, from two valgrind DHAT profiles.
//!
//! The binaries under test are run unmodified under `valgrind --tool=dhat`,
//! once serving `n1` requests and once `n2`, on one connection; the
//! difference of the two profiles is what `n2 - n1` requests cost, with
//! startup, the first connection and lazily grown buffers cancelled out.
//! (A counting `#[global_allocator]` would need `unsafe`, which the
//! workspace forbids, and would have to be linked into the gateway.)

use std::collections::HashMap;

use serde_json::Value;

use crate::BoxError;

/// Allocations by call site, from one DHAT profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Blocks allocated, in all.
    pub blocks: u64,
    /// Bytes allocated, in all.
    pub bytes: u64,
    /// Blocks and bytes by call site (the innermost frames that are not the
    /// allocator itself, outermost last).
    pub sites: HashMap<String, (u64, u64)>,
}

/// How many frames of a call site are kept: enough to see which code
/// allocated, few enough to merge the same site reached from many callers.
const SITE_FRAMES: usize = 4;

/// Parses a DHAT JSON profile (`dhatFileVersion` 2, as valgrind and the
/// `dhat` crate write it).
///
/// # Errors
///
/// When the text is not such a profile.
pub fn parse(json: &str) -> Result<Profile, BoxError> {
    let value: Value = serde_json::from_str(json)?;
    let frames: Vec<&str> = value["ftbl"]
        .as_array()
        .ok_or("a DHAT profile has an ftbl")?
        .iter()
        .map(|frame| frame.as_str().unwrap_or("?"))
        .collect();
    let mut profile = Profile::default();
    for pp in value["pps"].as_array().ok_or("a DHAT profile has pps")? {
        // DHAT's names: `tb` total bytes, `tbk` total blocks.
        let blocks = pp["tbk"].as_u64().unwrap_or(0);
        let bytes = pp["tb"].as_u64().unwrap_or(0);
        let site: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|index| frames.get(usize::try_from(index.as_u64()?).ok()?))
            .map(|frame| function_of(frame))
            .filter(|name| !is_allocator(name))
            .take(SITE_FRAMES)
            .collect();
        profile.blocks += blocks;
        profile.bytes += bytes;
        let entry = profile.sites.entry(site.join(" < ")).or_default();
        entry.0 += blocks;
        entry.1 += bytes;
    }
    Ok(profile)
}

/// The function of a DHAT frame: `0x4A2F10: tollgate::f (in /bin/x)` and
/// `0x4A2F10: tollgate::f (src/x.rs:10:5)` both become `tollgate::f`.
fn function_of(frame: &str) -> &str {
    let name = frame.split_once(": ").map_or(frame, |(_, name)| name);
    let name = name.rsplit_once(" (").map_or(name, |(name, _)| name);
    // Rust's symbol hash, `::h0123456789abcdef`, differs nowhere that matters.
    match name.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            path
        }
        _ => name,
    }
}

/// Frames of the allocator and of the standard library's growth paths,
/// which say nothing about who allocated.
fn is_allocator(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "[root]",
        "malloc",
        "calloc",
        "realloc",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "__rust",
        "__rdl",
        "alloc::alloc::",
        "alloc::raw_vec::",
        "<alloc::raw_vec::",
        "alloc::boxed::",
        "alloc::sync::Arc<T>::new",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// One call site's allocations per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Blocks per request.
    pub blocks: f64,
    /// Bytes per request.
    pub bytes: f64,
    /// The call site: innermost frame first.
    pub frames: String,
}

/// Allocations per request: the difference of two profiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerRequest {
    /// Blocks per request.
    pub blocks: f64,
    /// Bytes per request.
    pub bytes: f64,
    /// Sites with at least 0.2 blocks per request, most first.
    pub sites: Vec<Site>,
}

/// What `requests` more requests allocated: `more` minus `fewer`, divided.
pub fn per_request(fewer: &Profile, more: &Profile, requests: u64) -> PerRequest {
    let n = requests.max(1) as f64;
    let diff = |a: u64, b: u64| (a as f64 - b as f64) / n;
    let mut sites: Vec<Site> = more
        .sites
        .iter()
        .map(|(frames, &(blocks, bytes))| {
            let (b0, y0) = fewer.sites.get(frames).copied().unwrap_or_default();
            Site {
                blocks: diff(blocks, b0),
                bytes: diff(bytes, y0),
                frames: frames.clone(),
            }
        })
        .filter(|site| site.blocks >= 0.2)
        .collect();
    sites.sort_by(|a, b| b.blocks.total_cmp(&a.blocks).then(a.frames.cmp(&b.frames)));
    PerRequest {
        blocks: diff(more.blocks, fewer.blocks),
        bytes: diff(more.bytes, fewer.bytes),
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(pps: &str) -> String {
        format!(
            r#"{{"dhatFileVersion":2,"mode":"heap","pps":[{pps}],
            "ftbl":["[root]",
              "0x48A: malloc (in /usr/libexec/valgrind/vgpreload_dhat-amd64-linux.so)",
              "0x1F2: alloc::raw_vec::finish_grow (in /t/tollgate)",
              "0x1F3: tollgate_gateway::chat::forward::h0123456789abcdef (in /t/tollgate)",
              "0x1F4: hyper::proto::h1::conn::Conn::poll_read (in /t/tollgate)"]}}"#
        )
    }

    #[test]
    fn sites_skip_the_allocator_and_diff_per_request() {
        let fewer = parse(&profile(
            r#"{"tbk":10,"tb":1000,"fs":[1,2,3]},{"tbk":5,"tb":50,"fs":[1,4]}"#,
        ))
        .unwrap();
        let more = parse(&profile(
            r#"{"tbk":30,"tb":3000,"fs":[1,2,3]},{"tbk":5,"tb":50,"fs":[1,4]},{"tbk":7,"tb":70,"fs":[1,4,3]}"#,
        ))
        .unwrap();
        assert_eq!(more.blocks, 42);
        assert_eq!(more.sites["tollgate_gateway::chat::forward"], (30, 3000));
        let per = per_request(&fewer, &more, 10);
        assert_eq!(per.blocks, 2.7);
        assert_eq!(per.bytes, 207.0);
        assert_eq!(
            per.sites.len(),
            2,
            "the fixed site is gone: {:?}",
            per.sites
        );
        assert_eq!(per.sites[0].frames, "tollgate_gateway::chat::forward");
        assert_eq!(per.sites[0].blocks, 2.0);
        assert_eq!(
            per.sites[1].frames,
            "hyper::proto::h1::conn::Conn::poll_read < tollgate_gateway::chat::forward"
        );
    }

    #[test]
    fn not_a_profile_is_an_error() {
        assert!(parse("{}").is_err());
        assert!(parse("nope").is_err());
    }
}
