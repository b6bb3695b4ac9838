// SPDX-License-Identifier: GPL-2.0
//! A cursor over one 4 KiB code page: the few encodings the gate, sub and guest pages use.
//!
//! This is not a general assembler. Callers spell every instruction as its bytes, with the
//! encoding written next to it; the cursor only computes the fields that depend on where the
//! instruction ends (RIP-relative displacements, relative branch targets) and refuses to write
//! outside the page or backwards over code already emitted.

use super::super::error::Error;
use super::PAGE_BYTES;

/// A forward 8-bit branch whose target is not known yet.
#[derive(Clone, Copy, Debug)]
#[must_use]
pub(super) struct Rel8 {
    /// Offset of the rel8 byte.
    at: usize,
}

impl Rel8 {
    /// The farthest offset the branch can reach (127 bytes past its end).
    pub(super) fn reach(self) -> Result<usize, Error> {
        self.at.checked_add(1 + 127).ok_or(Error::NoSpace)
    }
}

/// Writes instructions into one page, front to back.
pub(super) struct Asm<'a> {
    page: &'a mut [u8; PAGE_BYTES],
    pos: usize,
}

impl<'a> Asm<'a> {
    /// Fills `page` with `fill` and starts at offset 0.
    pub(super) fn new(page: &'a mut [u8; PAGE_BYTES], fill: u8) -> Self {
        page.fill(fill);
        Self { page, pos: 0 }
    }

    /// The current offset.
    pub(super) const fn pos(&self) -> usize {
        self.pos
    }

    /// Moves forward to `offset`; the skipped bytes keep the fill pattern.
    pub(super) fn org(&mut self, offset: usize) -> Result<(), Error> {
        if offset < self.pos || offset > PAGE_BYTES {
            return Err(Error::NoSpace);
        }
        self.pos = offset;
        Ok(())
    }

    /// Emits raw bytes.
    pub(super) fn emit(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Error::NoSpace)?;
        self.page
            .get_mut(self.pos..end)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Emits a little-endian 64-bit immediate and returns its offset.
    pub(super) fn imm64(&mut self, value: u64) -> Result<usize, Error> {
        let at = self.pos;
        self.emit(&value.to_le_bytes())?;
        Ok(at)
    }

    /// Emits `head`, a RIP-relative disp32 that reaches `target`, then `tail`.
    ///
    /// `target` is a byte offset from the start of this page (negative: below it). The
    /// displacement is relative to the end of the whole instruction, `tail` included.
    pub(super) fn rip_rel(&mut self, head: &[u8], target: i64, tail: &[u8]) -> Result<(), Error> {
        let len = head
            .len()
            .checked_add(4)
            .and_then(|l| l.checked_add(tail.len()))
            .ok_or(Error::NoSpace)?;
        let end = self.pos.checked_add(len).ok_or(Error::NoSpace)?;
        let end = i64::try_from(end).map_err(|_| Error::NoSpace)?;
        let disp = target.checked_sub(end).ok_or(Error::NoSpace)?;
        let disp = i32::try_from(disp).map_err(|_| Error::NoSpace)?;
        self.emit(head)?;
        self.emit(&disp.to_le_bytes())?;
        self.emit(tail)
    }

    /// Emits `opcode` followed by a rel32 that reaches `target` (an offset in this page, or
    /// beyond it for the next page).
    pub(super) fn rel32(&mut self, opcode: &[u8], target: i64) -> Result<(), Error> {
        self.rip_rel(opcode, target, &[])
    }

    /// Emits a short branch (`opcode rel8`) whose target is bound later with [`Asm::bind`].
    pub(super) fn rel8_forward(&mut self, opcode: &[u8]) -> Result<Rel8, Error> {
        self.emit(opcode)?;
        let at = self.pos;
        self.emit(&[0])?;
        Ok(Rel8 { at })
    }

    /// Makes `fixup` branch to the current offset.
    pub(super) fn bind(&mut self, fixup: Rel8) -> Result<(), Error> {
        self.bind_to(fixup, self.pos)
    }

    fn bind_to(&mut self, fixup: Rel8, target: usize) -> Result<(), Error> {
        let next = fixup.at.checked_add(1).ok_or(Error::NoSpace)?;
        let target = i64::try_from(target).map_err(|_| Error::NoSpace)?;
        let next = i64::try_from(next).map_err(|_| Error::NoSpace)?;
        let rel = i8::try_from(target.checked_sub(next).ok_or(Error::NoSpace)?)
            .map_err(|_| Error::NoSpace)?;
        *self.page.get_mut(fixup.at).ok_or(Error::NoSpace)? = rel.to_le_bytes()[0];
        Ok(())
    }
}
