//! Little helpers shared by the WAL and block codecs: varints and a bounds
//! checked reader. Every read returns `None` instead of panicking, because
//! the bytes come from disk and may be anything.

/// The longest LEB128 encoding of a u64.
pub(crate) const UVARINT_BYTES_MAX: usize = 10;

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

pub(crate) fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, zigzag(x));
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.u64().map(|x| x as i64)
    }

    /// LEB128; refuses encodings longer than a u64 can need or that
    /// overflow, so garbage cannot wrap around silently.
    pub(crate) fn uvarint(&mut self) -> Option<u64> {
        let mut x: u64 = 0;
        for i in 0..UVARINT_BYTES_MAX {
            let b = self.u8()?;
            let low = u64::from(b & 0x7f);
            if i == UVARINT_BYTES_MAX - 1 && b > 1 {
                return None;
            }
            x |= low << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    pub(crate) fn varint(&mut self) -> Option<i64> {
        self.uvarint().map(unzigzag)
    }

    /// A uvarint that must fit a usize no larger than `max`.
    pub(crate) fn uvarint_max(&mut self, max: usize) -> Option<usize> {
        let x = self.uvarint()?;
        usize::try_from(x).ok().filter(|&x| x <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(x in any::<u64>(), y in any::<i64>()) {
            let mut out = Vec::new();
            put_uvarint(&mut out, x);
            put_varint(&mut out, y);
            let mut d = Decoder::new(&out);
            prop_assert_eq!(d.uvarint(), Some(x));
            prop_assert_eq!(d.varint(), Some(y));
            prop_assert!(d.is_empty());
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        let bytes = [0xffu8; 11];
        assert_eq!(Decoder::new(&bytes).uvarint(), None);
        let mut max = vec![0xffu8; 9];
        max.push(0x01);
        assert_eq!(Decoder::new(&max).uvarint(), Some(u64::MAX));
        max[9] = 0x02;
        assert_eq!(Decoder::new(&max).uvarint(), None);
    }
}
