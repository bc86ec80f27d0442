//! What the requests are. `static`: GET the URL, nothing else (the same work as `wrk URL`).
//! `app`: the app's API as a small social site sees it. A setup phase signs up `--users`
//! users (names unique to the run), logs each in and seeds `--keys` posts; then each request
//! is a read with probability `--read-ratio` (GET one post, drawn from a Zipf distribution
//! over the seeded posts so a few are hot; one read in twenty lists a user's posts; or, with
//! `--sweep`, every post in turn) or a write (POST a post as a random user). Setup is not part
//! of the measured run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use lab_api::app::{paths, Login, NewPost, Post, Signup, Token, Uploaded};
use serde::Serialize;

use super::client::{request, Answer, Connection};
use super::rng::Rng;
use super::target::Target;
use super::zipf::Zipf;

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// The app's API through the LB: setup, then reads (Zipf-hot posts) and writes.
    App,
    /// GET the URL only (compare with wrk).
    Static,
    /// Setup uploads `--keys` objects through the app; then GET them (Zipf-hot) where the
    /// app says they are: on the CDN edge when the cluster has one, else the files board.
    Objects,
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mix::App => "app",
            Mix::Static => "static",
            Mix::Objects => "objects",
        })
    }
}

/// The kind of one request, counted in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `static`: GET the URL.
    Get,
    /// GET one post.
    Read,
    /// GET a user's posts.
    List,
    /// POST a post.
    Write,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Get, Op::Read, Op::List, Op::Write];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Read => "read",
            Op::List => "list",
            Op::Write => "write",
        }
    }
}

/// Part of the reads that list a user's posts rather than read one.
pub const LIST_SHARE: f64 = 0.05;

/// A user of the run, logged in.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub authorization: HeaderValue,
}

/// What the app setup made.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub accounts: Vec<Account>,
    /// Post ids, most popular rank first.
    pub posts: Vec<u64>,
    pub took: Duration,
}

/// The app workload's knobs.
#[derive(Debug, Clone)]
pub struct AppKnobs {
    pub users: usize,
    pub keys: usize,
    pub read_ratio: f64,
    pub zipf: f64,
    /// Reads ask the app to skip its cache (`Cache-Control: no-cache`): the database's cost.
    pub no_cache: bool,
    /// Reads walk the seeded posts in order, round and round, and never list: each pass
    /// reads every post once (how many cache keys moved shows as one pass's misses).
    pub sweep: bool,
    /// Keep the acknowledged writes, to read them back after the run.
    pub verify_writes: bool,
}

/// Size of each object the `objects` mix uploads.
pub const OBJECT_BYTES: usize = 16 * 1024;
/// The bucket it uploads to (one of the default placement's).
pub const OBJECT_BUCKET: &str = "avatars";

/// What the objects setup made: where the objects are and their paths there.
#[derive(Debug, Clone)]
pub struct SeededObjects {
    /// `http://host:port/` the objects are served from (the edge, or the files board).
    pub origin: String,
    /// Paths on `origin`, most popular rank first.
    pub paths: Vec<String>,
    pub users: usize,
    pub took: Duration,
}

/// Builds each request of the measured run.
pub enum Workload {
    Static {
        target: Arc<Target>,
    },
    Objects {
        target: Arc<Target>,
        paths: Vec<String>,
        zipf: Zipf,
    },
    App {
        target: Arc<Target>,
        seeded: Seeded,
        zipf: Zipf,
        read_ratio: f64,
        no_cache: bool,
        /// The next read's place in the seeded posts, when reads sweep them.
        sweep: Option<AtomicUsize>,
        post_path: String,
        posts_path: String,
        users_path: String,
    },
}

impl Workload {
    pub fn statik(target: Arc<Target>) -> Self {
        Workload::Static { target }
    }

    pub fn app(target: Arc<Target>, seeded: Seeded, knobs: &AppKnobs) -> Self {
        let zipf = Zipf::new(seeded.posts.len().max(1), knobs.zipf);
        Workload::App {
            post_path: target.app_path(paths::POST_PREFIX),
            posts_path: target.app_path(paths::POSTS),
            users_path: target.app_path(paths::USERS_PREFIX),
            target,
            seeded,
            zipf,
            read_ratio: knobs.read_ratio,
            no_cache: knobs.no_cache,
            sweep: knobs.sweep.then(|| AtomicUsize::new(0)),
        }
    }

    /// GET `seeded`'s objects at `target` (where they are served from).
    pub fn objects(target: Arc<Target>, seeded: SeededObjects, knobs: &AppKnobs) -> Self {
        Workload::Objects {
            zipf: Zipf::new(seeded.paths.len().max(1), knobs.zipf),
            target,
            paths: seeded.paths,
        }
    }

    pub fn target(&self) -> Arc<Target> {
        match self {
            Workload::Static { target }
            | Workload::App { target, .. }
            | Workload::Objects { target, .. } => target.clone(),
        }
    }

    /// The next request, chosen with `rng`.
    pub fn next(&self, rng: &mut Rng) -> (Op, Request<Full<Bytes>>) {
        match self {
            Workload::Static { target } => (
                Op::Get,
                request(target, Method::GET, &target.url.path, None, None),
            ),
            Workload::Objects {
                target,
                paths,
                zipf,
            } => {
                let path = paths
                    .get(zipf.sample(rng).saturating_sub(1))
                    .map_or("/", String::as_str);
                (Op::Get, request(target, Method::GET, path, None, None))
            }
            Workload::App {
                target,
                seeded,
                zipf,
                read_ratio,
                no_cache,
                sweep,
                post_path,
                posts_path,
                users_path,
            } => {
                let read = |op: Op, path: &str| {
                    let mut req = request(target, Method::GET, path, None, None);
                    if *no_cache {
                        req.headers_mut().insert(
                            hyper::header::CACHE_CONTROL,
                            HeaderValue::from_static("no-cache"),
                        );
                    }
                    (op, req)
                };
                let account = &seeded.accounts[rng.below(seeded.accounts.len() as u64) as usize];
                if rng.next_f64() < *read_ratio {
                    if let Some(next) = sweep {
                        let at = next.fetch_add(1, Ordering::Relaxed) % seeded.posts.len().max(1);
                        let path = format!("{post_path}{}", seeded.posts.get(at).unwrap_or(&0));
                        return read(Op::Read, &path);
                    }
                    if rng.next_f64() < LIST_SHARE {
                        let path = format!("{users_path}{}/posts", account.id);
                        return read(Op::List, &path);
                    }
                    let post = seeded.posts[zipf.sample(rng) - 1];
                    let path = format!("{post_path}{post}");
                    read(Op::Read, &path)
                } else {
                    let body = post_body(rng.next_u64());
                    (
                        Op::Write,
                        request(
                            target,
                            Method::POST,
                            posts_path,
                            Some(body),
                            Some(&account.authorization),
                        ),
                    )
                }
            }
        }
    }
}

fn post_body(n: u64) -> Bytes {
    let post = NewPost {
        body: format!("lab load post {n:016x}: a few words to make it look like a post"),
    };
    // Serializing a struct of one String cannot fail.
    Bytes::from(serde_json::to_vec(&post).unwrap_or_default())
}

/// A name for this run's users: `ld<run>u<i>`, within the app's `[a-z0-9_-]{1,32}`.
pub fn user_name(run_id: &str, i: usize) -> String {
    format!("ld{run_id}u{i}")
}

/// Sign up and log in `knobs.users` users, then create `knobs.keys` posts (round robin over
/// the users), `parallel` at a time. The first failure stops the setup with what was asked
/// and what came back.
pub async fn setup(
    target: Arc<Target>,
    knobs: &AppKnobs,
    run_id: &str,
    parallel: usize,
    timeout: Duration,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let parallel = parallel.clamp(1, 32);
    let accounts = sign_up(&target, knobs, run_id, parallel, timeout).await?;

    let accounts_shared = Arc::new(accounts.clone());
    let for_posts = target.clone();
    let posts = in_parallel(&target, knobs.keys, parallel, move |k, mut conn| {
        let (target, accounts) = (for_posts.clone(), accounts_shared.clone());
        async move {
            let made = async {
                let account = &accounts[k % accounts.len()];
                let post = NewPost {
                    body: format!("seed post {k} of lab load"),
                };
                let answer = call(
                    &mut conn,
                    &target,
                    paths::POSTS,
                    &post,
                    Some(&account.authorization),
                    timeout,
                )
                .await
                .with_context(|| format!("creating seed post {k}"))?;
                let post: Post = serde_json::from_slice(&answer.body)
                    .context("the answer to creating a post is not a post")?;
                anyhow::Ok(post.id)
            }
            .await;
            (conn, made)
        }
    })
    .await?;
    Ok(Seeded {
        accounts,
        posts,
        took: started.elapsed(),
    })
}

/// Sign up `knobs.users` users and upload `knobs.keys` objects of [`OBJECT_BYTES`] to
/// [`OBJECT_BUCKET`] through the app (round robin over the users), `parallel` at a time;
/// the objects' URLs must all be on one server (the edge, or the files board).
pub async fn setup_objects(
    target: Arc<Target>,
    knobs: &AppKnobs,
    run_id: &str,
    parallel: usize,
    timeout: Duration,
) -> anyhow::Result<SeededObjects> {
    let started = Instant::now();
    let parallel = parallel.clamp(1, 32);
    let accounts = Arc::new(sign_up(&target, knobs, run_id, parallel, timeout).await?);
    let (for_objects, users, run_id) = (target.clone(), accounts.clone(), run_id.to_owned());
    let objects = in_parallel(&target, knobs.keys, parallel, move |k, mut conn| {
        let (target, accounts, run_id) = (for_objects.clone(), users.clone(), run_id.clone());
        async move {
            let made = async {
                let account = &accounts[k % accounts.len()];
                let path = target.app_path(&format!(
                    "{}{OBJECT_BUCKET}/ld{run_id}-{k}.bin",
                    paths::FILES_PREFIX
                ));
                let body = Bytes::from(object_bytes(k as u64));
                let mut req = request(
                    &target,
                    Method::PUT,
                    &path,
                    Some(body),
                    Some(&account.authorization),
                );
                req.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let answer = send_ok(
                    &mut conn,
                    req,
                    &format!("PUT {path}"),
                    " (does the cluster have a files board?)",
                    timeout,
                )
                .await?;
                let stored: Uploaded = serde_json::from_slice(&answer.body)
                    .context("the answer to an upload is not an upload")?;
                super::target::parse_url(&stored.url)
                    .with_context(|| format!("the app gave the object the URL {}", stored.url))
            }
            .await;
            (conn, made)
        }
    })
    .await?;
    let Some(first) = objects.first() else {
        bail!("setup uploaded no object");
    };
    let origin = format!("http://{}/", first.authority);
    if let Some(other) = objects.iter().find(|u| u.authority != first.authority) {
        bail!(
            "the objects are on two servers ({} and {}): one is loaded at a time",
            first.authority,
            other.authority
        );
    }
    Ok(SeededObjects {
        origin,
        paths: objects.into_iter().map(|u| u.path).collect(),
        users: accounts.len(),
        took: started.elapsed(),
    })
}

/// The bytes of object `k`: not all zeros, different per object.
fn object_bytes(k: u64) -> Vec<u8> {
    let mut rng = Rng::new(k.wrapping_add(1));
    (0..OBJECT_BYTES / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect()
}

/// Sign up and log in `knobs.users` users, `parallel` at a time.
async fn sign_up(
    target: &Arc<Target>,
    knobs: &AppKnobs,
    run_id: &str,
    parallel: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Account>> {
    let password = format!("lab-load-{run_id}");
    let (for_users, run_id) = (target.clone(), run_id.to_owned());
    let accounts = in_parallel(target, knobs.users, parallel, move |i, mut conn| {
        let (target, password, run_id) = (for_users.clone(), password.clone(), run_id.clone());
        async move {
            let made = async {
                let name = user_name(&run_id, i);
                let signup = Signup {
                    name: name.clone(),
                    password: password.clone(),
                };
                call(&mut conn, &target, paths::SIGNUP, &signup, None, timeout)
                    .await
                    .with_context(|| format!("signing up user {name}"))?;
                let login = Login {
                    name: name.clone(),
                    password,
                };
                let answer = call(&mut conn, &target, paths::LOGIN, &login, None, timeout)
                    .await
                    .with_context(|| format!("logging in user {name}"))?;
                let token: Token = serde_json::from_slice(&answer.body)
                    .with_context(|| format!("the answer to logging in {name} is not a token"))?;
                let authorization = HeaderValue::from_str(&format!("Bearer {}", token.token))
                    .context("the token cannot be sent in a header")?;
                anyhow::Ok(Account {
                    id: token.user.id,
                    authorization,
                })
            }
            .await;
            (conn, made)
        }
    })
    .await?;
    if accounts.is_empty() {
        bail!("setup made no user");
    }
    Ok(accounts)
}

/// Items `0..count` made by `make`, `parallel` at a time (each worker on its own keep-alive
/// connection to `target`, which `make` hands back), in order; the first failure stops them.
async fn in_parallel<T, F, Fut>(
    target: &Arc<Target>,
    count: usize,
    parallel: usize,
    make: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, Connection) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (Connection, anyhow::Result<T>)> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..parallel.min(count) {
        let (target, make) = (target.clone(), make.clone());
        tasks.spawn(async move {
            let mut conn = Connection::new(target);
            let mut mine = Vec::new();
            for k in (w..count).step_by(parallel) {
                let (back, made) = make(k, conn).await;
                conn = back;
                mine.push((k, made?));
            }
            anyhow::Ok(mine)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a setup task died")??);
    }
    all.sort_by_key(|(k, _)| *k);
    Ok(all.into_iter().map(|(_, made)| made).collect())
}

/// POST `body` as JSON to the app endpoint `endpoint`; a 2xx answer or an error saying what
/// came back instead.
async fn call<T: Serialize>(
    conn: &mut Connection,
    target: &Target,
    endpoint: &str,
    body: &T,
    authorization: Option<&HeaderValue>,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let path = target.app_path(endpoint);
    let json = Bytes::from(serde_json::to_vec(body).context("encoding a request")?);
    let req = request(target, Method::POST, &path, Some(json), authorization);
    let hint = format!(
        "\n(is {} the app or the LB in front of it? `--mix static` loads a plain web server)",
        target.url.text
    );
    send_ok(conn, req, &format!("POST {path}"), &hint, timeout).await
}

/// Send `req` (`what`, e.g. "POST /api/posts", names it); a 2xx answer, or an error with what
/// came back instead, then `hint`.
async fn send_ok(
    conn: &mut Connection,
    req: Request<Full<Bytes>>,
    what: &str,
    hint: &str,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let answer = conn
        .send(req, timeout)
        .await
        .map_err(|f| anyhow::anyhow!("{what}: {}", f.detail))?;
    if !answer.status.is_success() {
        let text = String::from_utf8_lossy(&answer.body);
        let snippet: String = text.chars().take(200).collect();
        bail!(
            "{what} answered {}: {}{hint}",
            answer.status,
            snippet.trim()
        );
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_fit_the_apps_rules() {
        let name = user_name("k3x9a0b1c2", 99_999);
        assert!(name.len() <= lab_api::app::MAX_NAME_CHARS, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'));
    }

    fn local_target() -> Arc<Target> {
        Arc::new(Target {
            url: super::super::target::parse_url("http://127.0.0.1:1/").expect("url"),
            addr: "127.0.0.1:1".parse().expect("addr"),
            host_header: HeaderValue::from_static("127.0.0.1:1"),
            alternates: Vec::new(),
            current: Default::default(),
        })
    }

    /// The app workload over `posts`, one user (id 7).
    fn app_workload(
        target: Arc<Target>,
        posts: std::ops::Range<u64>,
        read_ratio: f64,
        sweep: bool,
    ) -> Workload {
        let seeded = Seeded {
            accounts: vec![Account {
                id: 7,
                authorization: HeaderValue::from_static("Bearer x"),
            }],
            posts: posts.collect(),
            took: Duration::ZERO,
        };
        let knobs = AppKnobs {
            no_cache: false,
            users: 1,
            keys: seeded.posts.len(),
            read_ratio,
            zipf: 1.0,
            sweep,
            verify_writes: false,
        };
        Workload::app(target, seeded, &knobs)
    }

    #[test]
    fn app_requests_follow_the_read_ratio() {
        let target = local_target();
        let w = app_workload(target, 100..200, 0.9, false);
        let mut rng = Rng::new(5);
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            let (op, req) = w.next(&mut rng);
            counts[op.index()] += 1;
            match op {
                Op::Read => {
                    assert_eq!(req.method(), Method::GET);
                    let id: u64 = req
                        .uri()
                        .path()
                        .strip_prefix("/api/posts/")
                        .and_then(|s| s.parse().ok())
                        .expect("post id");
                    assert!((100..200).contains(&id));
                }
                Op::List => assert_eq!(req.uri().path(), "/api/users/7/posts"),
                Op::Write => {
                    assert_eq!(req.method(), Method::POST);
                    assert!(req.headers().contains_key(hyper::header::AUTHORIZATION));
                }
                Op::Get => panic!("static request in the app mix"),
            }
        }
        let writes = f64::from(counts[Op::Write.index()]) / 20_000.0;
        assert!((0.08..0.12).contains(&writes), "writes {writes}");
        let lists = f64::from(counts[Op::List.index()]) / 20_000.0;
        assert!((0.03..0.06).contains(&lists), "lists {lists}");
    }

    #[test]
    fn a_sweep_reads_every_post_once_per_pass() {
        let target = local_target();
        let w = app_workload(target, 100..110, 1.0, true);
        let mut rng = Rng::new(5);
        let ids: Vec<u64> = (0..25)
            .map(|_| {
                let (op, req) = w.next(&mut rng);
                assert_eq!(op, Op::Read);
                req.uri()
                    .path()
                    .strip_prefix("/api/posts/")
                    .and_then(|s| s.parse().ok())
                    .expect("post id")
            })
            .collect();
        let pass: Vec<u64> = (100..110).collect();
        assert_eq!(ids[..10], pass[..]);
        assert_eq!(ids[10..20], pass[..]);
        assert_eq!(ids[20..], pass[..5]);
    }
}
