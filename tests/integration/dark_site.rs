//! A dark site costs one try per probe: a connection no endpoint accepts is final for that
//! call (waiting through retries on every probe of a site in disaster cost seconds per
//! failover), and a site found dark through its Mold is asked once through its Glue too.
//! Counted in connections made, never timed.

use drbook::config::Config;
use drbook::dr::Dr;

use crate::harness::fakes::{self, Misbehaviour};
use crate::harness::{SECRET_KEY, refused_addr, site_toml};

fn dr_for(dir: &tempfile::TempDir, mold: &str, glue: &str) -> Dr {
    let path = dir.path().join("drbook.toml");
    let extra = format!("glue_urls = [\"{glue}\"]\nglue_insecure = true\ninsecure = true\n");
    std::fs::write(&path, site_toml("site-a", mold, SECRET_KEY, &extra)).unwrap();
    Dr::new(&Config::discover(Some(&path)).unwrap()).unwrap()
}

/// A TLS handshake that fails is a connection not made, as a refused one is; unlike a
/// refused one, each attempt can be counted.
#[tokio::test]
async fn a_connection_not_made_is_final_for_a_read_of_mold_and_of_glue() {
    let mold = fakes::raw("https", Misbehaviour::CloseAtOnce).await;
    let glue = fakes::raw("https", Misbehaviour::CloseAtOnce).await;
    let dir = tempfile::tempdir().unwrap();
    let dr = dr_for(&dir, &mold.label(), &glue.label());
    let e = dr.vms("site-a").await.unwrap_err();
    crate::harness::has(&e.to_string(), "cannot reach");
    assert_eq!(mold.connections(), 1, "asked once, not retried");
    let e = dr.image_status("site-a", "img-1").await.unwrap_err();
    crate::harness::has(&e.to_string(), "no Glue endpoint could be reached");
    assert_eq!(glue.connections(), 1, "asked once, not retried");
}

/// Glue that takes the request and hangs up is retried on a live site; on a site whose Mold
/// just refused, it is asked once.
#[tokio::test]
async fn a_site_found_dark_through_its_mold_is_asked_once_through_its_glue() {
    let glue = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let dir = tempfile::tempdir().unwrap();
    let refused = format!("http://{}", refused_addr());
    let dr = dr_for(&dir, &refused, &glue.label());
    assert!(dr.vms("site-a").await.is_err());
    assert!(dr.image_status("site-a", "img-1").await.is_err());
    assert_eq!(glue.connections(), 1);

    // The same Glue on a site not found dark yet (its Mold not asked) is retried: a lost
    // answer from a live storage VM is a transient.
    let glue = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let dir = tempfile::tempdir().unwrap();
    let dr = dr_for(&dir, &refused, &glue.label());
    assert!(dr.image_status("site-a", "img-1").await.is_err());
    assert!(glue.connections() > 1, "{}", glue.connections());
}
