//! The ledger's Lua scripts, one module each (the layout of mini-redis's commands): the script's
//! `.lua`, a typed argument struct whose [`LuaScript`] impl fixes the order of `KEYS` and `ARGV`,
//! and a typed reply with its decoder; the ledger's operations that call the script live beside
//! it.
//!
//! A script never reads `KEYS[i]` or `ARGV[i]` by position. [`compile`] puts a header in front of
//! it that names them from the Rust side's lists:
//!
//! ```lua
//! local sale_key, stock_key = KEYS[1], KEYS[2]
//! local user, quantity = ARGV[1], ARGV[2]
//! ```
//!
//! so the order is written once, in [`LuaScript::KEYS`] and [`LuaScript::ARGS`], and
//! [`Args::arg`] checks (in debug builds, so in every test) that each value is pushed under the
//! name the script reads it by. Lua that several scripts share is in `prelude/`, put after the
//! header of each script that lists it.

pub(crate) mod admit;
pub(crate) mod advance;
pub(crate) mod finish;
pub(crate) mod join;
pub(crate) mod lend;
pub(crate) mod receive;
pub(crate) mod release;
pub(crate) mod reserve;
pub(crate) mod restore;
pub(crate) mod retire;
pub(crate) mod settle;
pub(crate) mod sweep;
pub(crate) mod ticket;
pub(crate) mod warm;

use crate::keys::{Key, StockKeys};
use crate::{StockError, StockLedger};
use redis::{FromRedisValue, Script, ScriptInvocation, ToRedisArgs};
use std::collections::HashMap;
use std::fmt::{Debug, Write};
use std::sync::{LazyLock, PoisonError, RwLock};

/// Lua shared by several scripts.
pub(crate) mod prelude {
    /// The reservation record: `encode_record`, `try_decode_record`, `decode_record`.
    pub(crate) const RECORD: &str = include_str!("prelude/record.lua");
    /// `leave_outbox(order_id)`: an order leaves the pending index and the outbox.
    pub(crate) const OUTBOX: &str = include_str!("prelude/outbox.lua");
    /// `sale_exists()`, `set_sale_terms(...)`: needs the sale's key.
    pub(crate) const SALE: &str = include_str!("prelude/sale.lua");
    /// `per_order_keys()`: needs every key of the bucket.
    pub(crate) const PER_ORDER: &str = include_str!("prelude/per_order.lua");
    /// The transfer record between buckets: `encode_transfer`, `decode_transfer`.
    pub(crate) const TRANSFER: &str = include_str!("prelude/transfer.lua");
    /// `room_sale()`, `room_epoch(known, candidate)`: needs the sale's and the room's keys.
    pub(crate) const ROOM: &str = include_str!("prelude/room.lua");
}

/// One Lua script of the ledger, called with the value of its argument struct.
pub(crate) trait LuaScript {
    /// The script's name in errors and logs.
    const NAME: &'static str;
    /// The keys it takes, in `KEYS` order; the script reads each as the local `<name>_key`.
    const KEYS: &'static [Key];
    /// The names of its arguments, in `ARGV` order; the script reads each as a local of that
    /// name (a string, as Redis passes it).
    const ARGS: &'static [&'static str];
    /// Whether `ARGV` goes on past the named arguments (a list of order ids); the script reads
    /// them from `ARGV[REST]` on.
    const VARIADIC: bool = false;
    /// The shared Lua it needs, from [`prelude`].
    const PRELUDES: &'static [&'static str];
    /// The script's own Lua.
    const BODY: &'static str;
    /// The reply as Redis sends it.
    type Raw: FromRedisValue + Debug;
    /// The reply, decoded.
    type Reply;

    /// Pushes the arguments, each under its name in [`LuaScript::ARGS`], in that order.
    fn args(&self, args: &mut Args<'_, '_>);

    /// The reply, or `None` when it is not one the script gives.
    fn decode(raw: &Self::Raw) -> Option<Self::Reply>;
}

/// The source Redis runs for `S`: the header that names `KEYS` and `ARGV`, its preludes, then its
/// body.
fn source<S: LuaScript>() -> String {
    let mut source = String::new();
    let keys: Vec<String> = S::KEYS
        .iter()
        .map(|&key| format!("{}_key", <&str>::from(key)))
        .collect();
    let args: Vec<String> = S::ARGS.iter().map(|&name| name.to_owned()).collect();
    declare(&mut source, &keys, "KEYS");
    declare(&mut source, &args, "ARGV");
    if S::VARIADIC {
        let _ = writeln!(source, "local REST = {}", S::ARGS.len() + 1);
    }
    for prelude in S::PRELUDES {
        source.push_str(prelude);
    }
    source.push_str(S::BODY);
    source
}

/// `S`, ready to call.
fn compile<S: LuaScript>() -> Script {
    Script::new(&source::<S>())
}

/// The names of the ledger's scripts.
pub const SCRIPT_NAMES: [&str; 14] = [
    "admit", "advance", "finish", "join", "lend", "receive", "release", "reserve", "restore",
    "retire", "settle", "sweep", "ticket", "warm",
];

/// The Lua Redis runs for the script named `name` (its header, preludes and body), for a tool
/// that calls it outside the ledger (the benchmark's ceiling under `redis-benchmark`); `None`
/// for a name not in [`SCRIPT_NAMES`].
pub fn script_source(name: &str) -> Option<String> {
    Some(match name {
        "admit" => source::<admit::Admit>(),
        "advance" => source::<advance::Advance>(),
        "finish" => source::<finish::Finish>(),
        "join" => source::<join::Join>(),
        "lend" => source::<lend::Lend>(),
        "receive" => source::<receive::Receive>(),
        "release" => source::<release::Release>(),
        "reserve" => source::<reserve::Reserve>(),
        "restore" => source::<restore::Restore>(),
        "retire" => source::<retire::Retire>(),
        "settle" => source::<settle::Settle>(),
        "sweep" => source::<sweep::Sweep>(),
        "ticket" => source::<ticket::Ticket>(),
        "warm" => source::<warm::Warm>(),
        _ => return None,
    })
}

/// `S` compiled once per process (its SHA1 is what `EVALSHA` sends).
fn compiled<S: LuaScript>() -> &'static Script {
    type Compiled = RwLock<HashMap<&'static str, &'static Script>>;
    static COMPILED: LazyLock<Compiled> = LazyLock::new(Compiled::default);
    let known = COMPILED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(S::NAME)
        .copied();
    known.unwrap_or_else(|| {
        let mut compiled = COMPILED.write().unwrap_or_else(PoisonError::into_inner);
        // A dozen scripts, each made once: leaking them gives every call a plain reference.
        compiled
            .entry(S::NAME)
            .or_insert_with(|| Box::leak(Box::new(compile::<S>())))
    })
}

/// One line of the header: `local a, b = ARRAY[1], ARRAY[2]`.
fn declare(source: &mut String, names: &[String], array: &str) {
    if names.is_empty() {
        return;
    }
    let values: Vec<String> = (1..=names.len()).map(|i| format!("{array}[{i}]")).collect();
    let _ = writeln!(source, "local {} = {}", names.join(", "), values.join(", "));
}

/// The arguments of one call, pushed by name.
pub(crate) struct Args<'i, 's> {
    invocation: &'i mut ScriptInvocation<'s>,
    names: &'static [&'static str],
    pushed: usize,
}

impl Args<'_, '_> {
    /// Pushes the argument the script reads as `name`: the next one of its `ARGS`.
    pub(crate) fn arg(&mut self, name: &'static str, value: impl ToRedisArgs) -> &mut Self {
        debug_assert_eq!(
            self.names.get(self.pushed),
            Some(&name),
            "argument {} of the script",
            self.pushed + 1
        );
        self.pushed += 1;
        self.invocation.arg(value);
        self
    }

    /// Pushes the sale's terms (`starts_at`, `ends_at`, `per_user_limit`, `room`), as the scripts
    /// that write them hand them to `set_sale_terms` (`prelude/sale.lua`).
    pub(crate) fn terms(&mut self, spec: &domain::SaleSpec) -> &mut Self {
        let room = spec.admission.map(|room| room.encode()).unwrap_or_default();
        self.arg("starts_at", spec.window.starts_at.timestamp_millis())
            .arg("ends_at", spec.window.ends_at.timestamp_millis())
            .arg("per_user_limit", spec.per_user_limit)
            .arg("room", room)
    }

    /// Pushes one more argument past the named ones (a variadic script's list).
    pub(crate) fn rest(&mut self, value: impl ToRedisArgs) -> &mut Self {
        debug_assert!(
            self.pushed >= self.names.len(),
            "a listed argument is missing"
        );
        self.pushed += 1;
        self.invocation.arg(value);
        self
    }
}

impl StockLedger {
    /// Calls `script` on the bucket of `keys` (`EVALSHA`, loading it first when Redis does not
    /// have it) and decodes its reply. A reply the script does not give is
    /// [`StockError::Reply`]; the scripts' own `CORRUPT` error (a record that does not parse)
    /// is [`StockError::Corrupt`].
    pub(crate) async fn run<S: LuaScript>(
        &self,
        keys: &StockKeys,
        script: &S,
    ) -> Result<S::Reply, StockError> {
        let mut invocation = compiled::<S>().prepare_invoke();
        for &key in S::KEYS {
            invocation.key(keys.get(key));
        }
        let mut args = Args {
            invocation: &mut invocation,
            names: S::ARGS,
            pushed: 0,
        };
        script.args(&mut args);
        debug_assert!(
            args.pushed >= S::ARGS.len(),
            "{}: an argument is missing",
            S::NAME
        );
        let mut conn = self.conn.clone();
        let raw: S::Raw = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|error| StockError::from_script(S::NAME, error))?;
        S::decode(&raw).ok_or_else(|| StockError::Reply {
            script: S::NAME,
            reply: format!("{raw:?}"),
        })
    }
}

/// The positions of `orders`, grouped by the bucket each order's reservation lives in (in order
/// of bucket): a script runs on one bucket's keys.
pub(crate) fn by_bucket(orders: &[&domain::OrderId]) -> std::collections::BTreeMap<u8, Vec<usize>> {
    let mut groups: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
    for (i, order) in orders.iter().enumerate() {
        groups.entry(order.bucket()).or_default().push(i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe;

    impl LuaScript for Probe {
        const NAME: &'static str = "probe";
        const KEYS: &'static [Key] = &[Key::Sale, Key::Outbox];
        const ARGS: &'static [&'static str] = &["user", "quantity"];
        const VARIADIC: bool = true;
        const PRELUDES: &'static [&'static str] = &["-- prelude\n"];
        const BODY: &'static str = "return 1\n";
        type Raw = i64;
        type Reply = i64;
        fn args(&self, _: &mut Args<'_, '_>) {}
        fn decode(raw: &i64) -> Option<i64> {
            Some(*raw)
        }
    }

    #[test]
    fn the_header_names_keys_and_arguments_in_the_order_rust_pushes_them() {
        let script = compile::<Probe>();
        let expected = "local sale_key, outbox_key = KEYS[1], KEYS[2]\n\
                        local user, quantity = ARGV[1], ARGV[2]\n\
                        local REST = 3\n\
                        -- prelude\n\
                        return 1\n";
        assert_eq!(script.get_hash(), Script::new(expected).get_hash());
    }

    #[test]
    fn no_script_reads_keys_or_arguments_by_position() {
        for name in SCRIPT_NAMES {
            let source = script_source(name).unwrap();
            let positional = source
                .lines()
                .skip_while(|line| {
                    line.starts_with("local ") && line.contains(" = KEYS[")
                        || line.starts_with("local ") && line.contains(" = ARGV[")
                        || line.starts_with("local REST")
                })
                .filter(|line| !line.trim_start().starts_with("--"))
                .filter(|line| {
                    line.contains("KEYS[") || line.contains("ARGV[") && !line.contains("ARGV[i]")
                });
            assert_eq!(positional.count(), 0, "{name}: {source}");
        }
    }

    #[test]
    fn every_key_a_script_or_its_preludes_read_is_in_its_header() {
        for name in SCRIPT_NAMES {
            let source = script_source(name).unwrap();
            let mut lines = source.lines();
            let header = lines.next().unwrap();
            let declared: Vec<&str> = header
                .trim_start_matches("local ")
                .split(" = ")
                .next()
                .unwrap()
                .split(", ")
                .collect();
            // Redis refuses an undeclared name only when the line reading it runs.
            for line in lines.filter(|line| !line.trim_start().starts_with("--")) {
                for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.ends_with("_key") {
                        assert!(declared.contains(&word), "{name} reads {word}: {line}");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "argument 1 of the script")]
    fn an_argument_pushed_under_another_name_is_refused() {
        let script = Script::new("return 1");
        let mut invocation = script.prepare_invoke();
        let mut args = Args {
            invocation: &mut invocation,
            names: Probe::ARGS,
            pushed: 0,
        };
        args.arg("quantity", 1);
    }
}
