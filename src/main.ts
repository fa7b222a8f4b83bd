console.log("agent placeholder")
