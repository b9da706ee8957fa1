//! A blocking I2C master on the STM32F411's I2C1 (the F4 family's "v1" I2C
//! peripheral) in which every wait is bounded: [`TimeoutI2c`], an
//! `embedded-hal` 1.0 [`I2c`] with 7-bit addresses.
//!
//! **Why.** stm32f4xx-hal 0.23's I2C driver busy-waits without a bound in
//! several places (`while self.i2c.sr1().read().sb().bit_is_clear() {}`,
//! the wait for the previous STOP, the wait for MSL/BUSY, ...): a sensor
//! that holds SDA or SCL low, or a peripheral whose BUSY flag is stuck,
//! hangs the control loop forever. Here such a transaction returns
//! [`I2cError::Timeout`] instead, and the loop can apply its safe action.
//!
//! **Timeout semantics.** Time is the DWT cycle counter
//! ([`DWT::cycle_count`]), which the board must start before the first
//! transaction (see [`TimeoutI2c::new`]). The deadline covers a whole
//! transaction: it starts when [`I2c::transaction`] (or `read`, `write`,
//! `write_read`) is called, and every wait of that transaction (the end of
//! a previous STOP, START, address, each byte, the final STOP) polls until
//! its condition holds, an error flag is raised, or more than
//! `timeout_cycles` cycles have passed since the start. So
//! `timeout_cycles` is the longest a transaction may take, not the longest
//! a byte may take; size it for the longest transfer plus clock
//! stretching. A call returns at most about `timeout_cycles` +
//! 5,000 cycles (the grace given to the STOP after an error) + the reset
//! below (a few dozen register accesses) after it started. As a second
//! bound, which only matters if the cycle counter is not running, a
//! transaction also gives up after `timeout_cycles` polls (a poll takes
//! at least one cycle, so this never fires first while the counter runs).
//!
//! **Errors and recovery.** After any error, if the peripheral is still
//! bus master (SR2.MSL), a STOP is requested and waited for (at most 5,000
//! cycles). After a timeout, or when that STOP does not complete, the
//! peripheral is reset: CR1.SWRST set and cleared, then the CR1
//! configuration bits, CR2, CCR, TRISE, OAR1 and FLTR saved by
//! [`TimeoutI2c::new`] are written back and PE is set. Timeouts are counted
//! ([`TimeoutI2c::timeouts`]). NACK (AF), arbitration loss (ARLO), overrun
//! (OVR), PEC error (PECERR) and the SMBus TIMEOUT flag are reported and
//! cleared like stm32f4xx-hal's `check_and_clear_error_flags`; BERR is
//! cleared and otherwise ignored, as that driver does (erratum: BERR may
//! be raised spuriously in master mode, and a real one leaves the transfer
//! unaffected). The reset frees the peripheral (a stuck BUSY flag, a
//! START that could never be sent), not the bus: a slave that keeps SDA
//! low needs nine SCL pulses driven as GPIO, which only the board code
//! (owner of PB6/PB7) can do; until then each transaction fails with a
//! timeout, without hanging.
//!
//! **Sequences** (RM0383, 18.3.3, "Master receiver", closing method 2 for
//! polling, the one ST's C HAL uses; reads of a transaction's contiguous
//! `Read` operations are one reception of N bytes, ending with a NACK and
//! then STOP, or a repeated START when a `Write` follows):
//!
//! - N = 1: ACK = 0 before ADDR is cleared; clear ADDR and request
//!   STOP/START with interrupts masked (two register accesses), read the
//!   byte on RxNE.
//! - N = 2: ACK = 0, POS = 1, clear ADDR; on BTF (byte 1 in DR, byte 2 in
//!   the shift register, SCL stretched) request STOP/START, read both.
//! - N > 2: ACK = 1, clear ADDR, read on RxNE up to byte N-3; on BTF
//!   (N-2 in DR, N-1 shifting) ACK = 0, read N-2; on BTF request
//!   STOP/START, read N-1; on RxNE read N.
//! - Writes (like stm32f4xx-hal): per byte, wait TxE, write DR, wait BTF;
//!   then STOP, or START for a following `Read`. A write of no bytes is
//!   an address probe (START, address, STOP).
//!
//! stm32f4xx-hal 0.23 does not implement these read sequences (it clears
//! ACK and sets STOP after reading byte N-1, and for a 1-byte read only
//! after ADDR was cleared, so the last byte can be ACKed; a `Read` followed
//! by a `Write` in a transaction does not NACK its last byte; a NACK does
//! not generate a STOP); only its register usage is mirrored here.
//!
//! A `Read` group of zero bytes cannot be done on this peripheral (after
//! the address it always receives a byte): a transaction that has one
//! fails with [`I2cError::Overrun`] before touching the bus, as
//! stm32f4xx-hal does. An address above 0x7F fails with
//! [`I2cError::NoAcknowledge`], also without touching the bus.
//!
//! **Tested:** build-checked only (`cargo build`/`cargo clippy` for
//! `thumbv7em-none-eabihf`); it has not run on a board or against a
//! simulated peripheral, and CI has no board.

use cortex_m::peripheral::DWT;
use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::pac::i2c1::sr1;

/// CR1 bits restored after a reset: SMBUS, SMBTYPE, ENARP, ENPEC, ENGC,
/// NOSTRETCH (not PE, START, STOP, ACK, POS, PEC, ALERT, SWRST).
const CR1_CONFIG_MASK: u16 = 0x00FA;

/// Longest wait for the STOP requested after an error (cycles): 50 µs at
/// 100 MHz, several bit times even at 100 kHz.
const STOP_GRACE_CYCLES: u32 = 5_000;

/// Largest deadline (cycles), so that a wrapping difference of the 32-bit
/// cycle counter is never ambiguous: 21 s at 100 MHz.
const MAX_TIMEOUT_CYCLES: u32 = 0x7FFF_FFFF;

/// Why an I2C transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cError {
    /// A wait outlasted the transaction's deadline (or the SMBus TIMEOUT
    /// flag was raised); the peripheral was reset and counted in
    /// [`TimeoutI2c::timeouts`].
    Timeout,
    /// The device did not acknowledge its address or a data byte (or the
    /// address does not fit in 7 bits).
    NoAcknowledge,
    /// Another master won the bus.
    ArbitrationLoss,
    /// A packet error checking (PEC) error; PEC is not enabled by this
    /// driver, so not expected.
    Bus,
    /// The peripheral's data register was overrun (not expected in master
    /// mode), or a `Read` group of zero bytes was requested.
    Overrun,
}

impl embedded_hal::i2c::Error for I2cError {
    fn kind(&self) -> ErrorKind {
        match self {
            I2cError::Timeout => ErrorKind::Other,
            I2cError::NoAcknowledge => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            I2cError::ArbitrationLoss => ErrorKind::ArbitrationLoss,
            I2cError::Bus => ErrorKind::Bus,
            I2cError::Overrun => ErrorKind::Overrun,
        }
    }
}

/// The configuration registers written back after a software reset.
#[derive(Debug, Clone, Copy)]
struct Saved {
    /// CR1, configuration bits only ([`CR1_CONFIG_MASK`]).
    cr1: u16,
    cr2: u16,
    ccr: u16,
    trise: u16,
    oar1: u16,
    fltr: u32,
}

/// How a group of same-direction operations ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The transaction's last group: STOP.
    Stop,
    /// A group of the other direction follows: repeated START.
    Restart,
}

/// A deadline on the DWT cycle counter, with a poll count as a fallback.
struct Deadline {
    start: u32,
    budget: u32,
    polls: u32,
}

impl Deadline {
    fn new(budget: u32) -> Self {
        Deadline {
            start: DWT::cycle_count(),
            budget,
            polls: 0,
        }
    }

    /// Counts a poll; whether the deadline has passed.
    fn expired(&mut self) -> bool {
        self.polls = self.polls.saturating_add(1);
        DWT::cycle_count().wrapping_sub(self.start) > self.budget || self.polls > self.budget
    }
}

/// I2C1 as a blocking `embedded-hal` 1.0 I2C master whose every wait is
/// bounded (see the [module documentation](self)).
pub struct TimeoutI2c {
    i2c: pac::I2C1,
    saved: Saved,
    timeout_cycles: u32,
    timeouts: u32,
}

impl TimeoutI2c {
    /// Takes I2C1 already configured and enabled, e.g. by
    /// `stm32f4xx_hal::i2c::I2c::new(dp.I2C1, (pb6, pb7), mode, &mut rcc)`
    /// followed by that type's `release()`, which returns `(I2C1, (scl,
    /// sda))`: keep or drop the pins, they stay in their open-drain
    /// alternate function. Saves its configuration registers for the
    /// reset after a timeout.
    ///
    /// `timeout_cycles` is the longest a transaction may take, in core
    /// clock cycles (clamped to 2^31 - 1); 0 fails every wait that is not
    /// already satisfied.
    ///
    /// **Requires the DWT cycle counter to be running** before the first
    /// transaction: `DCB::enable_trace` then `DWT::enable_cycle_counter`
    /// (`cortex_m::peripheral`). If it is not, the waits are still bounded,
    /// but by `timeout_cycles` polls, which take several times longer.
    pub fn new(i2c: pac::I2C1, timeout_cycles: u32) -> Self {
        let saved = Saved {
            cr1: i2c.cr1().read().bits() & CR1_CONFIG_MASK,
            cr2: i2c.cr2().read().bits(),
            ccr: i2c.ccr().read().bits(),
            trise: i2c.trise().read().bits(),
            oar1: i2c.oar1().read().bits(),
            fltr: i2c.fltr().read().bits(),
        };
        TimeoutI2c {
            i2c,
            saved,
            timeout_cycles: timeout_cycles.min(MAX_TIMEOUT_CYCLES),
            timeouts: 0,
        }
    }

    /// Transactions that failed with [`I2cError::Timeout`] so far
    /// (saturating).
    pub fn timeouts(&self) -> u32 {
        self.timeouts
    }

    /// The deadline of a transaction, in core clock cycles.
    pub fn timeout_cycles(&self) -> u32 {
        self.timeout_cycles
    }

    /// Gives I2C1 back (configured and enabled as it was taken, unless a
    /// transfer is still in progress after an error).
    pub fn release(self) -> pac::I2C1 {
        self.i2c
    }

    /// Polls SR1 until `cond` holds, an error flag is raised, or the
    /// deadline passes. Reads only SR1: reading SR2 after SR1 would clear
    /// ADDR before the 1- and 2-byte reads have set ACK/POS.
    fn wait(&self, dl: &mut Deadline, cond: impl Fn(&sr1::R) -> bool) -> Result<(), I2cError> {
        loop {
            let sr1 = self.i2c.sr1().read();
            self.check_errors(&sr1)?;
            if cond(&sr1) {
                return Ok(());
            }
            if dl.expired() {
                return Err(I2cError::Timeout);
            }
        }
    }

    /// Waits until the hardware has generated a requested STOP.
    fn wait_stop_done(&self, dl: &mut Deadline) -> Result<(), I2cError> {
        loop {
            if self.i2c.cr1().read().stop().bit_is_clear() {
                return Ok(());
            }
            if dl.expired() {
                return Err(I2cError::Timeout);
            }
        }
    }

    /// Reports and clears the error flags in `sr1` (BERR: cleared only).
    fn check_errors(&self, sr1: &sr1::R) -> Result<(), I2cError> {
        let sr = self.i2c.sr1();
        if sr1.timeout().bit_is_set() {
            sr.write(|w| w.timeout().clear_bit());
            return Err(I2cError::Timeout);
        }
        if sr1.pecerr().bit_is_set() {
            sr.write(|w| w.pecerr().clear_bit());
            return Err(I2cError::Bus);
        }
        if sr1.ovr().bit_is_set() {
            sr.write(|w| w.ovr().clear_bit());
            return Err(I2cError::Overrun);
        }
        if sr1.af().bit_is_set() {
            sr.write(|w| w.af().clear_bit());
            return Err(I2cError::NoAcknowledge);
        }
        if sr1.arlo().bit_is_set() {
            sr.write(|w| w.arlo().clear_bit());
            return Err(I2cError::ArbitrationLoss);
        }
        if sr1.berr().bit_is_set() {
            sr.write(|w| w.berr().clear_bit());
        }
        Ok(())
    }

    /// Clears every error flag left from before.
    fn clear_error_flags(&self) {
        self.i2c.sr1().write(|w| {
            w.berr()
                .clear_bit()
                .arlo()
                .clear_bit()
                .af()
                .clear_bit()
                .ovr()
                .clear_bit()
                .pecerr()
                .clear_bit()
                .timeout()
                .clear_bit()
        });
    }

    /// Clears ADDR: SR1 read, then SR2 read.
    fn clear_addr(&self) {
        let _ = self.i2c.sr1().read();
        let _ = self.i2c.sr2().read();
    }

    /// Requests the end of a group: STOP, or a repeated START.
    fn request_end(&self, end: End) {
        match end {
            End::Stop => self.i2c.cr1().modify(|_, w| w.stop().set_bit()),
            End::Restart => self.i2c.cr1().modify(|_, w| w.start().set_bit()),
        };
    }

    fn read_dr(&self) -> u8 {
        self.i2c.dr().read().dr().bits()
    }

    /// Waits for the START (SB), sends the address, waits for ADDR (left
    /// set: the group clears it).
    fn address(&self, addr: u8, read: bool, dl: &mut Deadline) -> Result<(), I2cError> {
        self.wait(dl, |s| s.sb().bit_is_set())?;
        // SR1 was read with SB set: writing DR clears SB.
        let byte = (addr << 1) | u8::from(read);
        self.i2c.dr().write(|w| w.dr().set(byte));
        self.wait(dl, |s| s.addr().bit_is_set())
    }

    /// Sends a group of `Write` operations after the address.
    fn write_group(
        &self,
        group: &[Operation<'_>],
        end: End,
        dl: &mut Deadline,
    ) -> Result<(), I2cError> {
        self.clear_addr();
        for byte in group.iter().flat_map(write_bytes) {
            self.wait(dl, |s| s.tx_e().bit_is_set())?;
            self.i2c.dr().write(|w| w.dr().set(byte));
            self.wait(dl, |s| s.btf().bit_is_set())?;
        }
        // TxE = 1 and BTF = 1 (or no byte at all): STOP or repeated START.
        self.request_end(end);
        Ok(())
    }

    /// Receives a group of `Read` operations after the address, as one
    /// reception of N bytes (RM0383 18.3.3, closing method 2).
    fn read_group(
        &self,
        group: &mut [Operation<'_>],
        end: End,
        dl: &mut Deadline,
    ) -> Result<(), I2cError> {
        let n = read_len(group);
        let mut slots = group.iter_mut().flat_map(read_slots);
        let cr1 = self.i2c.cr1();
        match n {
            0 => return Err(I2cError::Overrun),
            1 => {
                cr1.modify(|_, w| w.ack().clear_bit().pos().clear_bit());
                // The STOP/START must be requested before the byte ends.
                cortex_m::interrupt::free(|_| {
                    self.clear_addr();
                    self.request_end(end);
                });
                self.wait(dl, |s| s.rx_ne().bit_is_set())?;
                store(slots.next(), self.read_dr());
            }
            2 => {
                cr1.modify(|_, w| w.ack().clear_bit().pos().set_bit());
                self.clear_addr();
                // Byte 1 in DR, byte 2 in the shift register (NACKed).
                self.wait(dl, |s| s.btf().bit_is_set())?;
                self.request_end(end);
                store(slots.next(), self.read_dr());
                self.wait(dl, |s| s.rx_ne().bit_is_set())?;
                store(slots.next(), self.read_dr());
                // POS is cleared once no START/STOP is pending (next
                // group's setup, or the end of the transaction).
            }
            _ => {
                cr1.modify(|_, w| w.ack().set_bit().pos().clear_bit());
                self.clear_addr();
                for _ in 3..n {
                    self.wait(dl, |s| s.rx_ne().bit_is_set())?;
                    store(slots.next(), self.read_dr());
                }
                // Byte N-2 in DR, N-1 in the shift register.
                self.wait(dl, |s| s.btf().bit_is_set())?;
                cr1.modify(|_, w| w.ack().clear_bit());
                store(slots.next(), self.read_dr());
                // Byte N-1 in DR, N (NACKed) in the shift register.
                self.wait(dl, |s| s.btf().bit_is_set())?;
                self.request_end(end);
                store(slots.next(), self.read_dr());
                self.wait(dl, |s| s.rx_ne().bit_is_set())?;
                store(slots.next(), self.read_dr());
            }
        }
        Ok(())
    }

    /// The transaction itself; on an error the caller cleans up.
    fn run(
        &self,
        addr: SevenBitAddress,
        operations: &mut [Operation<'_>],
        dl: &mut Deadline,
    ) -> Result<(), I2cError> {
        if addr > 0x7F {
            return Err(I2cError::NoAcknowledge);
        }
        if operations
            .chunk_by(same_direction)
            .any(|g| g.first().is_some_and(is_read) && read_len(g) == 0)
        {
            return Err(I2cError::Overrun);
        }
        if operations.is_empty() {
            return Ok(());
        }
        // A STOP of the previous transaction may still be under way.
        self.wait_stop_done(dl)?;
        self.clear_error_flags();
        let cr1 = self.i2c.cr1();
        cr1.modify(|_, w| w.pos().clear_bit().ack().clear_bit());
        cr1.modify(|_, w| w.start().set_bit());
        let mut groups = operations.chunk_by_mut(same_direction).peekable();
        while let Some(group) = groups.next() {
            let end = if groups.peek().is_some() {
                End::Restart
            } else {
                End::Stop
            };
            let read = group.first().is_some_and(is_read);
            self.address(addr, read, dl)?;
            if read {
                self.read_group(group, end, dl)?;
            } else {
                self.write_group(group, end, dl)?;
            }
        }
        // Flush: the bus is idle when the call returns.
        self.wait_stop_done(dl)?;
        cr1.modify(|_, w| w.pos().clear_bit());
        Ok(())
    }

    /// After an error: STOP if the bus is ours, reset after a timeout or
    /// a STOP that does not complete.
    fn abort(&mut self, error: I2cError) {
        let mut reset = error == I2cError::Timeout;
        if self.i2c.sr2().read().msl().bit_is_set() {
            self.i2c.cr1().modify(|_, w| w.stop().set_bit());
            let mut grace = Deadline::new(STOP_GRACE_CYCLES);
            if self.wait_stop_done(&mut grace).is_err() {
                reset = true;
            }
        }
        if reset {
            self.reset_peripheral();
        }
        if error == I2cError::Timeout {
            self.timeouts = self.timeouts.saturating_add(1);
        }
    }

    /// CR1.SWRST set and cleared, the saved configuration written back
    /// (with PE = 0, as CCR, TRISE and FLTR require), then PE set.
    #[allow(unsafe_code)]
    fn reset_peripheral(&self) {
        let i2c = &self.i2c;
        let s = self.saved;
        i2c.cr1().write(|w| w.swrst().set_bit());
        i2c.cr1().write(|w| w.swrst().clear_bit());
        // SAFETY: the value read from CR2 in `new`, where the HAL had
        // configured it (FREQ = the APB1 clock in MHz).
        i2c.cr2().write(|w| unsafe { w.bits(s.cr2) });
        // SAFETY: the value read from OAR1 in `new`.
        i2c.oar1().write(|w| unsafe { w.bits(s.oar1) });
        // SAFETY: the value read from CCR in `new` (HAL-computed clock
        // control), written while PE = 0 as required.
        i2c.ccr().write(|w| unsafe { w.bits(s.ccr) });
        // SAFETY: the value read from TRISE in `new`, written while PE = 0.
        i2c.trise().write(|w| unsafe { w.bits(s.trise) });
        // SAFETY: the value read from FLTR in `new`, written while PE = 0.
        i2c.fltr().write(|w| unsafe { w.bits(s.fltr) });
        // SAFETY: CR1's configuration bits read in `new` (masked by
        // CR1_CONFIG_MASK: no PE, START, STOP, ACK, POS or SWRST).
        i2c.cr1().write(|w| unsafe { w.bits(s.cr1) });
        i2c.cr1().modify(|_, w| w.pe().set_bit());
    }
}

impl ErrorType for TimeoutI2c {
    type Error = I2cError;
}

impl I2c<SevenBitAddress> for TimeoutI2c {
    /// Runs `operations` per the `embedded-hal` 1.0 contract: START and the
    /// address before the first group of same-direction operations, a
    /// repeated START and the address between groups, the last byte of
    /// every read group NACKed, STOP at the end; the whole within
    /// [`TimeoutI2c::timeout_cycles`].
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut dl = Deadline::new(self.timeout_cycles);
        let result = self.run(address, operations, &mut dl);
        if let Err(e) = result {
            self.abort(e);
        }
        result
    }
}

fn is_read(op: &Operation<'_>) -> bool {
    matches!(op, Operation::Read(_))
}

fn same_direction(a: &Operation<'_>, b: &Operation<'_>) -> bool {
    is_read(a) == is_read(b)
}

/// Bytes to read in a group (saturating; slices cannot add up to more).
fn read_len(group: &[Operation<'_>]) -> usize {
    group.iter().fold(0, |n, op| match op {
        Operation::Read(buf) => n.saturating_add(buf.len()),
        Operation::Write(_) => n,
    })
}

fn write_bytes<'a>(op: &'a Operation<'_>) -> impl Iterator<Item = u8> + 'a {
    let bytes: &[u8] = match op {
        Operation::Write(bytes) => bytes,
        Operation::Read(_) => &[],
    };
    bytes.iter().copied()
}

fn read_slots<'a>(op: &'a mut Operation<'_>) -> core::slice::IterMut<'a, u8> {
    let buf: &mut [u8] = match op {
        Operation::Read(buf) => buf,
        Operation::Write(_) => &mut [],
    };
    buf.iter_mut()
}

fn store(slot: Option<&mut u8>, byte: u8) {
    if let Some(slot) = slot {
        *slot = byte;
    }
}
