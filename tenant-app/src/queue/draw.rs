//! The pre-queue draw: a keyed permutation of the pre-queue's join numbers, computed on read and
//! never stored, so anyone holding the seed can recompute every place.
//!
//! Before anyone can join, the storefront fixes a random 32-byte seed and publishes its
//! commitment, `SHA-256(seed)`. At the start the pre-queue's `n` join numbers `1..=n` are placed
//! by a permutation of `[0, n)` keyed by the seed; after the start the seed is revealed, so a
//! shopper checks that it matches the commitment and recomputes every place. Nobody, the
//! storefront included, could choose the seed after seeing who joined.
//!
//! The permutation, precisely (so that it can be rewritten in any language):
//! - `h` is the smallest whole number with `4^h >= n` (at least 1); values are `2h` bits, split
//!   into a left and a right half of `h` bits each.
//! - Round `r` (0 to 3) maps `(L, R)` to `(R, L xor F(r, R))`, where `F(r, x)` is the first 8
//!   bytes of `SHA-256(seed || "timedeal-draw" || r as one byte || x as 4 bytes big-endian)`,
//!   read big-endian and taken modulo `2^h`.
//! - Four rounds make a bijection of `[0, 4^h)`; it is applied again while the result is `n` or
//!   more ("cycle walking"), which makes a bijection of `[0, n)`.
//! - The shopper who joined with number `j` has place `permute(j - 1) + 1`.

use sha2::{Digest, Sha256};

const ROUNDS: usize = 4;
const DOMAIN_TAG: &[u8] = b"timedeal-draw";

/// The commitment to the seed and the beacon named to key the draw with it: lowercase hex of
/// `SHA-256(seed || beacon URL)`, which is `SHA-256(seed)` without a beacon (see [`super::beacon`]).
pub fn commitment(seed: &[u8], beacon: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(beacon.as_bytes());
    hex(&hash.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex; `None` when it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The round function `F(r, x)` as specified in the module's documentation.
pub fn round_function(seed: &[u8], round: u8, x: u32) -> u64 {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(DOMAIN_TAG);
    hash.update([round]);
    hash.update(x.to_be_bytes());
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 gives 32 bytes"))
}

/// The draw of a pre-queue of `n`, with its round functions tabulated: each half takes at most
/// `2^h` values, so the table costs `4 * 2^h` hashes once (4,096 for a million shoppers) and
/// every place after that is a few lookups.
#[derive(Debug, Clone)]
pub struct Draw {
    n: u64,
    half_bits: u32,
    table: Vec<[u64; ROUNDS]>,
}

impl Draw {
    /// The draw of `n` join numbers; `n` may be 0 (nobody joined early). `n` is at most 2^32.
    pub fn new(seed: &[u8], n: u64) -> Self {
        let mut half_bits = 1;
        while (1u64 << (2 * half_bits)) < n {
            half_bits += 1;
        }
        let mask = (1u64 << half_bits) - 1;
        let table = (0..=mask)
            .map(|x| {
                let mut row = [0; ROUNDS];
                for (round, value) in row.iter_mut().enumerate() {
                    *value = round_function(seed, round as u8, x as u32) & mask;
                }
                row
            })
            .collect();
        Self {
            n,
            half_bits,
            table,
        }
    }

    /// The size of the pre-queue.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn forward(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for round in 0..ROUNDS {
            let next = left ^ self.table[right as usize][round];
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }

    fn backward(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for round in (0..ROUNDS).rev() {
            let previous = right ^ self.table[left as usize][round];
            right = left;
            left = previous;
        }
        (left << self.half_bits) | right
    }

    /// The place in line (1 first) of the shopper who joined the pre-queue with `number`
    /// (1 to `n`); `None` outside the pre-queue.
    pub fn place_of(&self, number: u64) -> Option<u64> {
        if number == 0 || number > self.n {
            return None;
        }
        let mut value = self.forward(number - 1);
        while value >= self.n {
            value = self.forward(value);
        }
        Some(value + 1)
    }

    /// The join number holding `place` (1 to `n`): the inverse of [`Draw::place_of`].
    pub fn number_at(&self, place: u64) -> Option<u64> {
        if place == 0 || place > self.n {
            return None;
        }
        let mut value = self.backward(place - 1);
        while value >= self.n {
            value = self.backward(value);
        }
        Some(value + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_draw_is_a_bijection_for_every_size_up_to_ten_thousand() {
        let mut seen = Vec::new();
        for n in 0..=10_000u64 {
            let draw = Draw::new(SEED, n);
            seen.clear();
            seen.resize(n as usize, false);
            for number in 1..=n {
                let place = draw.place_of(number).expect("a place for every number");
                assert!((1..=n).contains(&place), "n {n}: place {place}");
                assert!(
                    !seen[place as usize - 1],
                    "n {n}: place {place} given twice"
                );
                seen[place as usize - 1] = true;
                assert_eq!(draw.number_at(place), Some(number), "n {n}");
            }
            assert_eq!(draw.place_of(n + 1), None);
            assert_eq!(draw.place_of(0), None);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_order_and_another_seed_another() {
        let places = |seed: &[u8]| {
            let draw = Draw::new(seed, 2_000);
            (1..=2_000)
                .map(|j| draw.place_of(j).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(places(SEED), places(SEED));
        assert_ne!(places(SEED), places(b"another seed entirely, 32 bytes!"));
        assert_ne!(
            places(SEED),
            (1..=2_000).collect::<Vec<_>>(),
            "not shuffled"
        );
    }

    #[test]
    fn the_table_matches_the_round_function_as_specified() {
        // Written out from the specification, independently of the table.
        let naive = |number: u64, n: u64| {
            let h = (1..).find(|h| 4u64.pow(*h) >= n).unwrap();
            let mask = (1u64 << h) - 1;
            let mut value = number - 1;
            loop {
                let (mut l, mut r) = (value >> h, value & mask);
                for round in 0..4u8 {
                    let f = round_function(SEED, round, r as u32) & mask;
                    (l, r) = (r, l ^ f);
                }
                value = (l << h) | r;
                if value < n {
                    return value + 1;
                }
            }
        };
        let draw = Draw::new(SEED, 777);
        for number in 1..=777 {
            assert_eq!(draw.place_of(number), Some(naive(number, 777)));
        }
    }

    #[test]
    fn the_commitment_is_the_sha256_of_the_seed_and_the_beacon() {
        assert_eq!(
            commitment(b"abc", ""),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "without a beacon, SHA-256 of the seed"
        );
        assert_eq!(commitment(b"ab", "c"), commitment(b"abc", ""));
        assert_ne!(commitment(b"abc", "https://beacon"), commitment(b"abc", ""));
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
