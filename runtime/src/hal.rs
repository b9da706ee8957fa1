//! Hardware adapters over `embedded-hal` 1.0: an I2C sensor and PWM
//! actuators for [`ControlLoop`](crate::control::ControlLoop).
//!
//! Any HAL that implements `embedded_hal::i2c::I2c` or
//! `embedded_hal::pwm::SetDutyCycle` (the STM32, nRF, RP and ESP HALs do)
//! plugs in here. Bus errors are returned as the adapters' `Error` types;
//! the control loop counts them (`sensor_errors`, `actuator_errors`) and
//! applies the safe action, it never stops.
//!
//! - [`I2cSensor`]: `OBS` signed 16-bit channels in consecutive registers,
//!   read in one `write_read`; `x_j = scale_j · raw_j + offset_j`.
//! - [`PwmActuator`]: action `a_j ∈ [low_j, high_j]` → duty
//!   `round((a_j − low_j)/(high_j − low_j) · max_duty)` on channel `j`.

use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;

use crate::control::{Actuator, Sensor};

/// Byte order of a 16-bit sensor register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Low byte at the lower register address (most MEMS with
    /// auto-increment, e.g. LSM6DS, BMI270).
    #[default]
    LittleEndian,
    /// High byte first (e.g. MPU-6050).
    BigEndian,
}

/// A sensor of `OBS` signed 16-bit channels at consecutive register
/// addresses of one I2C device.
///
/// One read is a single `write_read(address, [register], buf)` of `2·OBS`
/// bytes, so the device must auto-increment its register address. Channel
/// `j` is the two bytes at `register + 2j`, as an `i16` in [`ByteOrder`],
/// and reads as `x_j = scale_j · raw_j + offset_j` (e.g. `scale = 1/16384`
/// g per LSB for an accelerometer at ±2 g). Bus errors are returned
/// unchanged.
#[derive(Debug, Clone)]
pub struct I2cSensor<I2C, const OBS: usize> {
    i2c: I2C,
    address: u8,
    register: u8,
    order: ByteOrder,
    scale: [f32; OBS],
    offset: [f32; OBS],
}

impl<I2C: I2c, const OBS: usize> I2cSensor<I2C, OBS> {
    /// Channels starting at `register` of the 7-bit `address`,
    /// little-endian, with per-channel `scale` and no offset.
    pub fn new(i2c: I2C, address: u8, register: u8, scale: [f32; OBS]) -> Self {
        I2cSensor {
            i2c,
            address,
            register,
            order: ByteOrder::LittleEndian,
            scale,
            offset: [0.0; OBS],
        }
    }

    /// Sets the registers' byte order.
    pub fn with_byte_order(mut self, order: ByteOrder) -> Self {
        self.order = order;
        self
    }

    /// Sets a per-channel offset added after scaling.
    pub fn with_offset(mut self, offset: [f32; OBS]) -> Self {
        self.offset = offset;
        self
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }

    /// The bus (e.g. for its error counters).
    pub fn i2c(&self) -> &I2C {
        &self.i2c
    }
}

impl<I2C: I2c, const OBS: usize> Sensor<OBS> for I2cSensor<I2C, OBS> {
    type Error = I2C::Error;

    fn read(&mut self) -> Result<[f32; OBS], I2C::Error> {
        let mut raw = [[0u8; 2]; OBS];
        self.i2c
            .write_read(self.address, &[self.register], raw.as_flattened_mut())?;
        let mut out = [0.0; OBS];
        for (((o, r), &s), &b) in out.iter_mut().zip(&raw).zip(&self.scale).zip(&self.offset) {
            let v = match self.order {
                ByteOrder::LittleEndian => i16::from_le_bytes(*r),
                ByteOrder::BigEndian => i16::from_be_bytes(*r),
            };
            *o = s * v as f32 + b;
        }
        Ok(out)
    }
}

/// `ACT` PWM channels, one per action dimension: `a_j ∈ [low_j, high_j]`
/// maps linearly to duty `0 ..= max_duty_cycle()`.
///
/// The duty is `round(f · max)` with `f = (a − low)/(high − low)` clipped to
/// `[0, 1]`; a NaN action (never produced by the control loop) maps to
/// `f = ½`, and bounds with `high ≤ low` to `f = 0`. Every channel is set
/// even if an earlier one fails; the first error is returned.
#[derive(Debug, Clone)]
pub struct PwmActuator<P, const ACT: usize> {
    channels: [P; ACT],
    low: [f32; ACT],
    high: [f32; ACT],
}

impl<P: SetDutyCycle, const ACT: usize> PwmActuator<P, ACT> {
    /// Channel `j` drives action dimension `j` over `[low_j, high_j]`
    /// (usually the policy's action bounds).
    pub fn new(channels: [P; ACT], low: [f32; ACT], high: [f32; ACT]) -> Self {
        PwmActuator {
            channels,
            low,
            high,
        }
    }

    /// Gives the channels back.
    pub fn release(self) -> [P; ACT] {
        self.channels
    }

    /// The duty [`apply`](Actuator::apply) would set on each channel for
    /// `action` (e.g. the safe action, for a panic handler that must set it
    /// without the actuator).
    pub fn duty_of(&mut self, action: &[f32; ACT]) -> [u16; ACT] {
        let mut out = [0u16; ACT];
        for ((o, ch), ((&a, &lo), &hi)) in out
            .iter_mut()
            .zip(self.channels.iter_mut())
            .zip(action.iter().zip(&self.low).zip(&self.high))
        {
            *o = duty(a, lo, hi, ch.max_duty_cycle());
        }
        out
    }
}

/// The duty for `a` on `[lo, hi]` with full scale `max`.
fn duty(a: f32, lo: f32, hi: f32, max: u16) -> u16 {
    let span = hi - lo;
    let f = if span > 0.0 && span.is_finite() {
        (a - lo) / span
    } else {
        0.0
    };
    // `clamp` with constant, ordered bounds cannot panic; NaN is handled
    // first (it would pass through `clamp`).
    let f = if f.is_nan() { 0.5 } else { f.clamp(0.0, 1.0) };
    // In [0, max]: the cast cannot saturate.
    libm::roundf(f * max as f32) as u16
}

impl<P: SetDutyCycle, const ACT: usize> Actuator<ACT> for PwmActuator<P, ACT> {
    type Error = P::Error;

    fn apply(&mut self, action: &[f32; ACT]) -> Result<(), P::Error> {
        let mut result = Ok(());
        for (((ch, &a), &lo), &hi) in self
            .channels
            .iter_mut()
            .zip(action)
            .zip(&self.low)
            .zip(&self.high)
        {
            let d = duty(a, lo, hi, ch.max_duty_cycle());
            if let Err(e) = ch.set_duty_cycle(d) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}
