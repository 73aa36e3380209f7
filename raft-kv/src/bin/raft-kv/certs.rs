//! `raft-kv certs`: the cluster CA, node and client certificates, as PEM files.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use raft_node::quic::ClusterCa;

#[derive(Subcommand)]
pub enum Certs {
    /// Creates a new CA: writes `ca.pem` (give it to every node) and `ca.key` (keep it secret).
    Ca {
        /// The directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The cluster's name, written into the CA certificate.
        #[arg(long, default_value = "raft")]
        name: String,
    },
    /// Issues node `id` of cluster `cluster-id` a certificate signed by the CA: writes
    /// `node-<id>.pem` and `node-<id>.key`.
    Node {
        /// The directory holding `ca.pem` and `ca.key`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The cluster id to bind to the certificate (the `cluster_id` of the node's config): a
        /// CA shared by several clusters cannot then let a node of one join another.
        #[arg(long)]
        cluster_id: u64,
        /// The node id to bind to the certificate.
        #[arg(long)]
        id: u64,
        /// Addresses or DNS names clients reach the node at (repeat the flag); the client API's
        /// certificate must name the host the client connects to.
        #[arg(long = "host", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
        hosts: Vec<String>,
        /// The directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issues a client of the API a certificate: writes `client-<name>.pem` and `client-<name>.key`.
    Client {
        /// The directory holding `ca.pem` and `ca.key`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// The directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: Certs) -> Result<(), String> {
    match command {
        Certs::Ca { out, name } => {
            let ca = ClusterCa::generate(&name).map_err(|e| e.to_string())?;
            write(&out, "ca.pem", &ca.cert_pem(), false)?;
            write(&out, "ca.key", &ca.key_pem(), true)?;
            println!("wrote {0}/ca.pem and {0}/ca.key", out.display());
        }
        Certs::Node {
            ca_dir,
            cluster_id,
            id,
            hosts,
            out,
        } => {
            let ca = load_ca(&ca_dir)?;
            let cert = ca
                .issue_for_hosts(cluster_id, id, &hosts)
                .map_err(|e| e.to_string())?;
            write(&out, &format!("node-{id}.pem"), &cert.cert_pem, false)?;
            write(&out, &format!("node-{id}.key"), &cert.key_pem, true)?;
            println!("wrote {0}/node-{id}.pem and {0}/node-{id}.key", out.display());
        }
        Certs::Client { ca_dir, name, out } => {
            let ca = load_ca(&ca_dir)?;
            let cert = ca.issue_client(&name).map_err(|e| e.to_string())?;
            write(&out, &format!("client-{name}.pem"), &cert.cert_pem, false)?;
            write(&out, &format!("client-{name}.key"), &cert.key_pem, true)?;
            println!(
                "wrote {0}/client-{name}.pem and {0}/client-{name}.key",
                out.display()
            );
        }
    }
    Ok(())
}

fn load_ca(ca_dir: &Path) -> Result<ClusterCa, String> {
    let read = |name: &str| {
        let path = ca_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    ClusterCa::from_pem(&read("ca.pem")?, &read("ca.key")?).map_err(|e| e.to_string())
}

/// Writes a file; a secret one is readable by its owner only.
fn write(dir: &Path, name: &str, contents: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&path)
        .map_err(|e| format!("cannot create {} (it must not exist yet): {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
