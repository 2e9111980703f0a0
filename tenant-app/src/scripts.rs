//! The Lua scripts that keep the deal's Redis state consistent. Each is loaded once and run by
//! hash (`EVALSHA`, falling back to `EVAL` after a Redis restart); each file states the invariant
//! it keeps.

use redis::Script;

pub struct Scripts {
    pub restore: Script,
    pub join: Script,
    pub open: Script,
    pub snapshot: Script,
    pub admit: Script,
    pub lease: Script,
    pub leave: Script,
    pub reserve: Script,
    pub confirm: Script,
    pub release: Script,
    pub restock: Script,
    pub next_block: Script,
    pub published: Script,
}

impl Scripts {
    pub fn load() -> Self {
        Self {
            restore: Script::new(include_str!("../lua/restore.lua")),
            join: Script::new(include_str!("../lua/join.lua")),
            open: Script::new(include_str!("../lua/open.lua")),
            snapshot: Script::new(include_str!("../lua/snapshot.lua")),
            admit: Script::new(include_str!("../lua/admit.lua")),
            lease: Script::new(include_str!("../lua/lease.lua")),
            leave: Script::new(include_str!("../lua/leave.lua")),
            reserve: Script::new(include_str!("../lua/reserve.lua")),
            confirm: Script::new(include_str!("../lua/confirm.lua")),
            release: Script::new(include_str!("../lua/release.lua")),
            restock: Script::new(include_str!("../lua/restock.lua")),
            next_block: Script::new(include_str!("../lua/next_block.lua")),
            published: Script::new(include_str!("../lua/published.lua")),
        }
    }
}
