//! ble_gatt simulator (in progress)
