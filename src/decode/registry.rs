//! registry (in progress)
use super::{Decoder, OptionError, Options};
use crate::reading::Kind;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport { Serial, Mqtt, Mllp }
#[derive(Debug)]
pub struct DriverInfo { pub name: &'static str, pub devices: &'static str, pub transports: &'static [Transport], pub kinds: &'static [Kind], pub framing: &'static str, pub experimental: bool, pub continuous: bool }
pub fn drivers() -> &'static [DriverInfo] { &[] }
pub fn driver_info(name: &str) -> Option<&'static DriverInfo> { drivers().iter().find(|d| d.name == name) }
pub fn build(name: &str, _o: &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>> { Err(vec![OptionError{key: name.into(), reason: "todo".into()}]) }
