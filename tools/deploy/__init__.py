"""Int8 export, C code generation and firmware builds for microcontrollers."""
