//! `settle.lua`: once the receiver has counted a transfer, the lender forgets it and remembers
//! it as settled.

use super::{Args, LuaScript};
use crate::keys::Key;

/// One call of `settle.lua` on the lending bucket.
pub(crate) struct Settle<'a> {
    pub(crate) transfer: &'a str,
}

impl LuaScript for Settle<'_> {
    const NAME: &'static str = "settle";
    const PRELUDES: &'static [&'static str] = &[];
    const BODY: &'static str = include_str!("settle.lua");
    const KEYS: &'static [Key] = &[Key::Lent, Key::Settled];
    const ARGS: &'static [&'static str] = &["transfer"];
    type Raw = i64;
    type Reply = ();

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("transfer", self.transfer);
    }

    fn decode(reply: &i64) -> Option<()> {
        (*reply == 1).then_some(())
    }
}
