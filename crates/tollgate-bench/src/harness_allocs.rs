//! The allocation counts: the floor and the gateway run under valgrind's
//! DHAT, and the allocations of one request kept.

use std::net::SocketAddr;
use std::process::Command;

use tokio::runtime::Runtime;

use super::*;

pub(super) fn has_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs the floor and the gateway under valgrind's DHAT twice per mode,
/// `fewer` and `more` requests on one connection, and keeps the difference.
pub(super) fn count_allocations(
    runtime: &Runtime,
    options: &Options,
    upstream: SocketAddr,
    fewer: u64,
    more: u64,
    results: &mut Results,
) -> Result<(), BoxError> {
    let config = options.work_dir.join("gateway.yaml");
    for target in [FLOOR, GATEWAY] {
        for mode in [Mode::Complete, Mode::Stream] {
            eprintln!("allocations: {target} {} (valgrind)", mode.name());
            let mut profiles = Vec::new();
            for requests in [fewer, more] {
                let out = options
                    .work_dir
                    .join(format!("dhat-{target}-{}-{requests}.json", mode.name()));
                let wrap = vec![
                    String::from("valgrind"),
                    String::from("--tool=dhat"),
                    String::from("--num-callers=24"),
                    format!("--dhat-out-file={}", out.display()),
                ];
                let log = options
                    .work_dir
                    .join(format!("valgrind-{target}-{}.log", mode.name()));
                let (mut process, addr) = if target == GATEWAY {
                    start_gateway(options, &config, &format!("valgrind-{target}"), Some(wrap))?
                } else {
                    let mut command = Command::new(&wrap[0]);
                    command
                        .args(&wrap[1..])
                        .arg(&options.floor)
                        .args(["--upstream", &upstream.to_string()]);
                    let mut process = Process::spawn(target, &mut command, Some(&log))?;
                    let addr = process.wait_listening(START_TIMEOUT)?;
                    (process, addr)
                };
                let spec = LoadSpec {
                    addr,
                    body: body(mode, MODEL),
                    mode,
                    connections: 1,
                    stop: Stop::Requests(requests),
                    request_timeout: Duration::from_secs(30),
                };
                let report = runtime.block_on(load::run(&spec, None))?;
                if report.completed != requests {
                    return Err(format!(
                        "{target} under valgrind: {} of {requests} requests completed",
                        report.completed
                    )
                    .into());
                }
                let status = process.terminate(START_TIMEOUT)?;
                let text = std::fs::read_to_string(&out).map_err(|e| {
                    format!(
                        "{target} under valgrind ({status}) wrote no profile {}: {e}",
                        out.display()
                    )
                })?;
                profiles.push(allocs::parse(&text)?);
            }
            let per_request = allocs::per_request(&profiles[0], &profiles[1], more - fewer);
            let sites = options
                .work_dir
                .join(format!("allocs-{target}-{}.txt", mode.name()));
            std::fs::write(&sites, render_sites(target, mode, &per_request))?;
            results.allocs.push(AllocRow {
                target: target.into(),
                mode,
                per_request,
            });
        }
    }
    results.allocs_note = format!(
        "valgrind DHAT on the unmodified binaries, ({more} − {fewer} requests) on one connection; \
         every site per binary and mode in {}/allocs-*.txt",
        options.work_dir.display()
    );
    Ok(())
}

fn render_sites(target: &str, mode: Mode, per: &allocs::PerRequest) -> String {
    let mut out = format!(
        "# {target}, {}: {:.2} allocations and {:.0} bytes per request\n\
         # allocs/req  bytes/req  call site (innermost first)\n",
        mode.name(),
        per.blocks,
        per.bytes
    );
    for site in &per.sites {
        out.push_str(&format!(
            "{:>11.2} {:>10.0}  {}\n",
            site.blocks, site.bytes, site.frames
        ));
    }
    out
}
