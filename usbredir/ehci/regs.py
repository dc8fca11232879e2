"""EHCI register offsets, bit masks and in-memory structure fields (EHCI 1.0; spec ehci.md §2-§6)."""

# capability registers (offsets in the MMIO window)
CAPLENGTH = 0x00
HCIVERSION = 0x02
HCSPARAMS = 0x04
HCCPARAMS = 0x08
OPREG = 0x20  # operational registers start here (CAPLENGTH value)

# operational registers (offsets from the window base)
USBCMD = 0x20
USBSTS = 0x24
USBINTR = 0x28
FRINDEX = 0x2C
CTRLDSSEGMENT = 0x30
PERIODICLISTBASE = 0x34
ASYNCLISTADDR = 0x38
CONFIGFLAG = 0x60
PORTSC0 = 0x64
MMIO_SIZE = 0x1000

# USBCMD
CMD_RS = 1 << 0
CMD_HCRESET = 1 << 1
CMD_FLS = 3 << 2
CMD_PSE = 1 << 4
CMD_ASE = 1 << 5
CMD_IAAD = 1 << 6
CMD_LHCR = 1 << 7
CMD_ITC_SHIFT = 16
CMD_RESET_VALUE = 0x0008_0000
CMD_WRITABLE = 0x00FF_0BFF & ~CMD_FLS  # ITC, park bits, LHCR, IAAD, ASE, PSE, HCRESET, RS

# USBSTS
STS_INT = 1 << 0
STS_ERR = 1 << 1
STS_PCD = 1 << 2
STS_FLR = 1 << 3
STS_HSE = 1 << 4
STS_IAA = 1 << 5
STS_W1C = 0x3F
STS_HALT = 1 << 12
STS_RECL = 1 << 13
STS_PSS = 1 << 14
STS_ASS = 1 << 15
INTR_MASK = 0x3F

# PORTSC
PORT_CCS = 1 << 0
PORT_CSC = 1 << 1
PORT_PED = 1 << 2
PORT_PEDC = 1 << 3
PORT_OCA = 1 << 4
PORT_OCC = 1 << 5
PORT_FPR = 1 << 6
PORT_SUSPEND = 1 << 7
PORT_PR = 1 << 8
PORT_LS = 3 << 10
PORT_PP = 1 << 12
PORT_PO = 1 << 13
PORT_W1C = PORT_CSC | PORT_PEDC | PORT_OCC
PORT_RW = 0x0070_01C0  # FPR, SUSPEND, PR, wake enables

# link pointers
LP_T = 1
LP_TYPE_SHIFT = 1
TYP_ITD, TYP_QH, TYP_SITD, TYP_FSTN = 0, 1, 2, 3
LP_ADDR = 0xFFFF_FFE0

# qTD token
TOK_DT = 1 << 31
TOK_BYTES_SHIFT = 16
TOK_BYTES_MASK = 0x7FFF
TOK_IOC = 1 << 15
TOK_CPAGE_SHIFT = 12
TOK_CERR_SHIFT = 10
TOK_PID_SHIFT = 8
PID_OUT, PID_IN, PID_SETUP = 0, 1, 2
TOK_ACTIVE = 1 << 7
TOK_HALTED = 1 << 6
TOK_DBE = 1 << 5
TOK_BABBLE = 1 << 4
TOK_XACT = 1 << 3
TOK_MISSED = 1 << 2
TOK_SPLIT = 1 << 1
TOK_PING = 1 << 0

# QH endpoint characteristics (dword 1) / capabilities (dword 2)
QH_H = 1 << 15
QH_DTC = 1 << 14
EPS_FULL, EPS_LOW, EPS_HIGH = 0, 1, 2

# iTD transaction dwords
ITD_ACTIVE = 1 << 31
ITD_DBE = 1 << 30
ITD_BABBLE = 1 << 29
ITD_XACT = 1 << 28
ITD_IOC = 1 << 15

MAX_QTD_BYTES = 5 * 4096


def token(pid: int, length: int, *, dt: int = 0, ioc: bool = False, cerr: int = 3, active: bool = True) -> int:
    """Build a qTD token dword."""
    return ((dt & 1) << 31 | (length & TOK_BYTES_MASK) << TOK_BYTES_SHIFT | (TOK_IOC if ioc else 0)
            | (cerr & 3) << TOK_CERR_SHIFT | (pid & 3) << TOK_PID_SHIFT | (TOK_ACTIVE if active else 0))
