//! ble_gatt decoder (in progress)
